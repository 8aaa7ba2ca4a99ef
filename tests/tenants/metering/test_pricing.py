"""Pricing: the repository's tables, their versions, exact and dated-snapshot matching, and plan/tenant overrides."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantgate.core.exchange import Usage
from tenantgate.tenants.metering import price_table
from tenantgate.tenants.metering.pricing import PRICES_DIR, Measure, Price, PriceBook, PriceOverride, PriceTable

NOV = datetime(2026, 11, 15, tzinfo=UTC).timestamp()
DEC = datetime(2026, 12, 8, tzinfo=UTC).timestamp()
BOOK = PriceBook.load()
DEC_VERSION = BOOK.table_at(DEC).version  # the newest table in effect on 2026-12-08
MILLION = Usage(input_tokens=1_000_000)


def test_repository_table_prices_a_chat_completion_exactly() -> None:
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=500_000)
    cost = BOOK.cost("gpt-4o-mini", usage, at=DEC)
    assert (cost.input_nusd, cost.cached_input_nusd, cost.output_nusd) == (90_000_000, 30_000_000, 300_000_000)
    assert cost.usd == Decimal("0.42")
    assert (cost.version, cost.unpriced) == (DEC_VERSION, None)
    # Events of November keep November's table.
    assert BOOK.cost("gpt-4o-mini", usage, at=NOV).version == "2026-11-01"


def test_snapshot_names_use_their_model_price_and_the_served_model_comes_first() -> None:
    assert BOOK.cost("gpt-4o-mini-2024-07-18", MILLION, at=DEC).usd == Decimal("0.15")
    assert BOOK.cost("gpt-4o-2024-08-06", MILLION, at=DEC).usd == Decimal("2.5")
    assert BOOK.cost("o3-pro-2025-06-10", MILLION, at=DEC).usd == 20
    # The model the upstream answered with is priced before the one requested (e.g. an alias).
    assert BOOK.cost("my-alias", MILLION, served_model="gpt-4o-mini-2024-07-18", at=DEC).usd == Decimal("0.15")


@pytest.mark.parametrize(
    ("model", "input_per_1m"),
    [
        # Premium variants have their own price, never their base model's.
        ("o1-pro", 150),
        ("o3-pro", 20),
        ("gpt-5-pro", 15),
        ("gpt-4.5-preview", 75),
        ("gpt-4o-mini-transcribe", Decimal("1.25")),
        ("gpt-4o-transcribe", Decimal("2.5")),
        ("gpt-4o-mini-tts", Decimal("0.6")),
        ("gpt-4o-mini-realtime-preview", Decimal("0.6")),
    ],
)
def test_a_longer_name_is_its_own_model_not_its_prefix(model: str, input_per_1m: Decimal) -> None:
    assert BOOK.cost(model, MILLION, at=DEC).usd == input_per_1m


@pytest.mark.parametrize(
    "model",
    [
        "llama-3-70b",
        "gpt-4o-mini-ft-acme",  # neither the model nor a dated snapshot of it
        "gpt-4o-mini:ft-acme",
        "gpt-4o-minix",
        "GPT-4O-MINI",
        "gpt-4o-mini-2024-13-45",  # not a date
        "gpt-4o-mini-2024-07-18-x",
        "gpt-4o-mini-20240718",
        " gpt-4o-mini",
        "",
    ],
)
def test_anything_else_is_unpriced_not_free(model: str) -> None:
    cost = BOOK.cost(model, Usage(input_tokens=10, output_tokens=10), at=DEC)
    assert (cost.unpriced, cost.version, cost.total_nusd) == ("model", None, 0)
    assert not cost.priced


def _valid_date(text: str) -> bool:
    digits = text[:4] + text[5:7] + text[8:]
    if len(text) != 10 or text[4] != "-" or text[7] != "-" or not (digits.isascii() and digits.isdigit()):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _has_price(model: str, names: set[str]) -> bool:
    """The rule, written independently of the code: the name itself, or <name>-YYYY-MM-DD of a priced name."""
    if model in names:
        return True
    return any(model.startswith(name + "-") and _valid_date(model[len(name) + 1 :]) for name in names)


TABLE_NAMES = sorted(BOOK.table_at(DEC).prices)
_dates = st.dates().map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}")
_near_names = st.one_of(
    st.tuples(st.sampled_from(TABLE_NAMES), st.text(max_size=12)).map("".join),
    st.tuples(st.text(max_size=6), st.sampled_from(TABLE_NAMES)).map("".join),
    st.tuples(st.sampled_from(TABLE_NAMES), st.just("-"), _dates).map("".join),
    st.tuples(st.sampled_from(TABLE_NAMES), st.sampled_from(["-", "-pro", "-mini", "-x"]), _dates).map("".join),
    st.tuples(st.sampled_from(TABLE_NAMES), st.just("-"), st.from_regex(r"\d{4}-\d{2}-\d{2}", fullmatch=True)).map(
        "".join
    ),
    st.text(max_size=40),
)


@settings(deadline=None)  # a busy machine can make one example slow; correctness is what is checked
@given(_near_names)
def test_no_name_gets_a_price_unless_it_is_a_priced_name_or_its_dated_snapshot(model: str) -> None:
    book = PriceBook.load()
    book.set_overrides(
        [PriceOverride("po_c", "custom-model", Price(Decimal(1), Decimal(1)), effective_from=0, tenant_id="ten_a")],
        {},
    )
    cost = book.cost(model, Usage(input_tokens=1000, output_tokens=1000), tenant_id="ten_a", at=DEC)
    # (A name with a price may still not price a chat completion: dall-e-3's is per image.)
    assert (cost.unpriced != "model") == _has_price(model, {*TABLE_NAMES, "custom-model"}), model
    if not cost.priced:
        assert (cost.version, cost.total_nusd) == (None, 0)


def test_audio_tokens_use_audio_prices_where_the_model_has_them() -> None:
    usage = Usage(input_tokens=1_000_000, input_audio_tokens=250_000, output_tokens=0)
    # gpt-4o-audio-preview: text input $2.50, audio input $40 per 1M.
    assert (
        BOOK.cost("gpt-4o-audio-preview", usage, at=DEC).usd == Decimal("0.75") * Decimal("2.5") + Decimal("0.25") * 40
    )


def test_rounding_is_per_event_to_the_nano_dollar() -> None:
    book = PriceBook([PriceTable("t", 0, {"tiny": Price(Decimal("0.0004"), Decimal("0.0006"))})])
    # 0.4 and 0.6 nano-USD per token: rounded half-up once per event, exactly, no float artefacts.
    assert book.cost("tiny", Usage(input_tokens=1)).total_nusd == 0
    assert book.cost("tiny", Usage(input_tokens=2)).total_nusd == 1
    assert book.cost("tiny", Usage(output_tokens=1)).total_nusd == 1
    cost = BOOK.cost("gpt-4.1-nano", Usage(input_tokens=3, cached_input_tokens=1, output_tokens=7), at=DEC)
    assert (cost.input_nusd, cost.cached_input_nusd, cost.output_nusd) == (2 * 100, 25, 7 * 400)


def _table(version: str, day: str, input_price: str) -> PriceTable:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()
    return PriceTable(version, start, {"gpt-x": Price(Decimal(input_price), Decimal(0))})


def test_events_are_priced_with_the_version_in_effect_at_their_time() -> None:
    book = PriceBook([_table("v1", "2026-01-01", "1"), _table("v2", "2026-06-01", "2")])
    assert book.cost("gpt-x", MILLION, at=datetime(2025, 12, 1, tzinfo=UTC).timestamp()).version == "v1"
    assert book.cost("gpt-x", MILLION, at=datetime(2026, 3, 1, tzinfo=UTC).timestamp()).usd == 1
    later = book.cost("gpt-x", MILLION, at=datetime(2026, 7, 1, tzinfo=UTC).timestamp())
    assert (later.usd, later.version) == (2, "v2")


def test_tenant_override_beats_plan_override_beats_table() -> None:
    book = PriceBook.load()
    cheap = Price(Decimal("0.01"), Decimal("0.02"))
    plan_price = Price(Decimal("0.10"), Decimal("0.20"))
    later = DEC + 86400
    book.set_overrides(
        [
            PriceOverride("po_plan", "gpt-4o-mini", plan_price, effective_from=0, plan_id="plan_gold"),
            PriceOverride("po_ten", "gpt-4o-mini", cheap, effective_from=0, tenant_id="ten_vip"),
            PriceOverride(
                "po_late", "gpt-4o-mini", Price(Decimal(9), Decimal(9)), effective_from=later, tenant_id="ten_b"
            ),
        ],
        {"ten_gold": "plan_gold", "ten_vip": "plan_gold"},
    )
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert book.cost("gpt-4o-mini", usage, tenant_id="ten_vip", at=DEC).usd == Decimal("0.03")
    gold = book.cost("gpt-4o-mini", usage, tenant_id="ten_gold", at=DEC)
    assert (gold.usd, gold.version) == (Decimal("0.30"), f"{DEC_VERSION}+po_plan")
    assert book.cost("gpt-4o-mini", usage, tenant_id="ten_other", at=DEC).usd == Decimal("0.75")
    # An override applies from its effective time on, not before.
    assert book.cost("gpt-4o-mini", usage, tenant_id="ten_b", at=DEC).usd == Decimal("0.75")
    assert book.cost("gpt-4o-mini", usage, tenant_id="ten_b", at=later + 1).usd == 18


def test_overrides_match_like_the_table_exact_names_and_dated_snapshots_only() -> None:
    book = PriceBook.load()
    one = Price(Decimal(1), Decimal(1))
    book.set_overrides(
        [
            PriceOverride("po_4o", "gpt-4o", one, effective_from=0, tenant_id="ten_a"),
            PriceOverride("po_llama", "llama-3", Price(Decimal(4), Decimal(0)), effective_from=0),
        ],
        {},
    )
    assert book.cost("gpt-4o-2024-08-06", MILLION, tenant_id="ten_a", at=DEC).usd == 1
    assert book.cost("gpt-4o-mini", MILLION, tenant_id="ten_a", at=DEC).usd == Decimal("0.15")
    assert book.cost("gpt-4o-audio-preview", MILLION, tenant_id="ten_a", at=DEC).usd == Decimal("2.5")
    assert book.cost("llama-3", MILLION, at=DEC).usd == 4
    assert book.cost("llama-3-2025-01-01", MILLION, at=DEC).usd == 4
    assert book.cost("llama-3-70b", MILLION, at=DEC).unpriced == "model"


def test_an_exact_table_entry_beats_an_override_that_only_matches_as_a_snapshot() -> None:
    book = PriceBook([PriceTable("t", 0, {"m-2025-01-01": Price(Decimal(3), Decimal(0))})])
    book.set_overrides([PriceOverride("po_m", "m", Price(Decimal(1), Decimal(0)), effective_from=0)], {})
    assert book.cost("m-2025-01-01", MILLION).usd == 3
    assert book.cost("m-2025-02-01", MILLION).usd == 1


def test_global_override_beats_the_table_and_yields_to_plan_and_tenant_overrides() -> None:
    book = PriceBook.load()
    book.set_overrides(
        [
            PriceOverride("po_all", "gpt-4o-mini", Price(Decimal(1), Decimal(0)), effective_from=0),
            PriceOverride("po_gold", "gpt-4o-mini", Price(Decimal(2), Decimal(0)), effective_from=0, plan_id="plan_g"),
            PriceOverride("po_vip", "gpt-4o-mini", Price(Decimal(3), Decimal(0)), effective_from=0, tenant_id="ten_v"),
        ],
        {"ten_gold": "plan_g", "ten_v": "plan_g"},
    )
    assert book.cost("gpt-4o-mini", MILLION, at=DEC).usd == 1  # no tenant known: the global price still applies
    other = book.cost("gpt-4o-mini", MILLION, tenant_id="ten_other", at=DEC)
    assert (other.usd, other.version) == (1, f"{DEC_VERSION}+po_all")
    assert book.cost("gpt-4o-mini", MILLION, tenant_id="ten_gold", at=DEC).usd == 2
    assert book.cost("gpt-4o-mini", MILLION, tenant_id="ten_v", at=DEC).usd == 3


def test_of_two_overrides_starting_together_the_newer_one_applies() -> None:
    book = PriceBook.load()
    newer, older = "po_01kb0000000000000000000002", "po_01kb0000000000000000000001"
    book.set_overrides(
        [
            PriceOverride(newer, "gpt-4o", Price(Decimal(7), Decimal(0)), effective_from=0, tenant_id="ten_a"),
            PriceOverride(older, "gpt-4o", Price(Decimal(5), Decimal(0)), effective_from=0, tenant_id="ten_a"),
        ],
        {},
    )
    cost = book.cost("gpt-4o", MILLION, tenant_id="ten_a", at=DEC)
    assert (cost.usd, cost.version) == (7, f"{DEC_VERSION}+{newer}")


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"input": "-1", "output": "1"}, "non-negative"),
        ({"input": "1"}, "input and output"),
        ({"input": "1", "output": "1", "per_minute": "0.006"}, "one of"),
        ({"per_1m_characters": "15", "per_minute": "1"}, "one of"),
        ({"input": "1", "output": "1", "prefix_match": True}, "unknown price field"),
        ({"per_image": {"standard": {"1024x1024": "0.04"}}, "default_size": "512x512"}, "defaults"),
        ({"per_image": {"standard": "0.04"}}, "map sizes"),
        ({"input": "1", "output": "1", "flex": "2"}, "at most 1"),
        ({"input": True, "output": "1"}, "non-negative"),
    ],
)
def test_a_price_file_that_cannot_be_priced_exactly_is_refused(
    tmp_path: Path, fields: dict[str, object], error: str
) -> None:
    (tmp_path / "2026-01-01.yaml").write_text(yaml.safe_dump({"version": "x", "models": {"m": fields}}))
    with pytest.raises(ValueError, match=error):
        PriceBook.load(tmp_path)


def test_the_new_table_says_where_its_prices_come_from_and_old_tables_stay() -> None:
    files = sorted(path.name for path in PRICES_DIR.glob("*.yaml"))
    assert files[:2] == ["2026-11-01.yaml", "2026-12-07.yaml"]
    table = BOOK.table_at(DEC)
    assert table.source is not None and "openai.com" in table.source and table.version in table.source
    tool = BOOK.tool_price("web_search", at=DEC)
    assert tool is not None and (tool.unit, tool.per_unit) == ("call", Decimal("0.01"))
    assert BOOK.tool_price("web_search", at=NOV) is None


def test_every_model_the_dev_upstream_serves_has_a_price() -> None:
    from tenantgate.devupstream.catalog import MODELS

    assert [model for model in MODELS if model not in BOOK.table_at(DEC).prices] == []


DEC_7 = datetime(2026, 12, 7, 12, tzinfo=UTC).timestamp()
IN_AND_OUT = Usage(input_tokens=1_000_000, output_tokens=1_000_000)


def test_an_exact_snapshot_row_beats_the_snapshot_rule_and_old_events_keep_their_table() -> None:
    # OpenAI sells gpt-4o-2024-05-13 at $5 / $15 per 1M tokens, gpt-4o at $2.50 / $10.
    snapshot = BOOK.cost("gpt-4o-2024-05-13", IN_AND_OUT, at=DEC)
    assert (snapshot.usd, snapshot.version) == (20, "2026-12-08")
    assert BOOK.cost("gpt-4o-2024-08-06", IN_AND_OUT, at=DEC).usd == Decimal("12.5")  # priced as gpt-4o
    # An event of 2026-12-07 stays priced by the table of its time (the file is never edited).
    assert BOOK.cost("gpt-4o-2024-05-13", IN_AND_OUT, at=DEC_7).usd == Decimal("12.5")
    # The model that answered is priced before the alias requested.
    assert BOOK.cost("gpt-4o", IN_AND_OUT, served_model="gpt-4o-2024-05-13", at=DEC).usd == 20


def test_exact_beats_snapshot_and_a_model_listed_without_price_is_unpriced(tmp_path: Path) -> None:
    models = {"m": {"input": "1", "output": "1"}, "m-2025-01-01": {"input": "3", "output": "3"}, "m-2025-02-02": None}
    (tmp_path / "2026-01-01.yaml").write_text(yaml.safe_dump({"version": "v", "models": models}))
    book = PriceBook.load(tmp_path)
    assert book.cost("m-2025-01-01", MILLION).usd == 3  # its own row, not m's
    assert book.cost("m-2025-03-03", MILLION).usd == 1  # a snapshot without a row: m's price
    listed = book.cost("m-2025-02-02", MILLION)
    assert (listed.priced, listed.unpriced, listed.total_nusd) == (False, "model", 0)
    # Neither by the alias requested when the model that answered is the one without a price.
    assert book.cost("m", MILLION, served_model="m-2025-02-02").unpriced == "model"
    with pytest.raises(KeyError):
        book.price_for("m-2025-02-02")
    # An override for the exact name prices it.
    override = PriceOverride("po_1", "m-2025-02-02", Price(input=Decimal(7), output=Decimal(7)), 0.0)
    book.set_overrides([override], {})
    assert book.cost("m-2025-02-02", MILLION).usd == 7


@pytest.mark.parametrize(
    ("model", "usage", "usd"),
    [
        # Dated snapshots and snapshots without a date whose list price differs from their base's.
        ("gpt-4o-2024-05-13", IN_AND_OUT, Decimal("20")),
        ("gpt-3.5-turbo-1106", IN_AND_OUT, Decimal("3")),
        ("gpt-3.5-turbo-0125", IN_AND_OUT, Decimal("2")),
        ("gpt-4-0613", IN_AND_OUT, Decimal("90")),
        ("gpt-4-0125-preview", IN_AND_OUT, Decimal("40")),
        ("gpt-4-32k", IN_AND_OUT, Decimal("180")),
        # Models that had no price.
        ("chatgpt-4o-latest", IN_AND_OUT, Decimal("20")),
        ("o1-preview-2024-09-12", IN_AND_OUT, Decimal("75")),
        ("davinci-002", IN_AND_OUT, Decimal("4")),
        ("babbage-002", IN_AND_OUT, Decimal("0.8")),
        ("computer-use-preview", IN_AND_OUT, Decimal("15")),
        ("codex-mini-latest", Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000), Decimal("0.375")),
        ("o3-deep-research-2025-06-26", IN_AND_OUT, Decimal("50")),
        ("o4-mini-deep-research", IN_AND_OUT, Decimal("10")),
        ("gpt-5-chat-latest", IN_AND_OUT, Decimal("11.25")),
        ("gpt-5.1-codex-mini", IN_AND_OUT, Decimal("2.25")),
        ("gpt-5.2-pro", IN_AND_OUT, Decimal("189")),
        # Audio tokens and image tokens at their own prices.
        ("gpt-audio-2025-08-28", Usage(input_tokens=1_000_000, input_audio_tokens=1_000_000), Decimal("32")),
        ("gpt-audio-mini", Usage(output_tokens=1_000_000, output_audio_tokens=1_000_000), Decimal("20")),
        (
            "gpt-image-1-mini",
            Usage(input_tokens=2_000_000, image_tokens=1_000_000, output_tokens=1_000_000),
            Decimal("12.5"),
        ),
    ],
)
def test_the_2026_12_08_table_prices_models_at_their_list_price(model: str, usage: Usage, usd: Decimal) -> None:
    cost = BOOK.cost(model, usage, at=DEC)
    assert (cost.usd, cost.version) == (usd, "2026-12-08")


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o-realtime-preview-2024-10-01", "gpt-4o-realtime-preview"),
        ("gpt-4o-audio-preview-2024-10-01", "gpt-4o-audio-preview"),
    ],
)
def test_snapshots_sold_at_a_price_the_table_cannot_verify_are_unpriced_not_their_base(model: str, base: str) -> None:
    assert BOOK.cost(model, IN_AND_OUT, at=DEC).unpriced == "model"
    assert BOOK.cost(model, IN_AND_OUT, at=DEC_7).priced  # the 2026-12-07 table priced them as their base
    assert BOOK.cost(base, IN_AND_OUT, at=DEC).priced


def test_models_whose_price_the_table_cannot_say_stay_unpriced() -> None:
    for model in ("gpt-4o-search-preview", "gpt-4o-mini-search-preview-2025-03-11", "gpt-realtime-mini", "gpt-5.4"):
        assert BOOK.cost(model, IN_AND_OUT, at=DEC).unpriced == "model", model


def test_an_estimate_of_speech_is_priced_only_when_it_counted_the_audio() -> None:
    speech = Measure(category="audio_speeches", quantity=20, usage_reported=False)
    heard = Usage(input_tokens=100, output_tokens=1250, output_audio_tokens=1250)  # a minute of audio
    cost = BOOK.cost("gpt-4o-mini-tts", heard, measure=speech, at=DEC)
    assert cost.usd == (100 * Decimal("0.60") + 1250 * Decimal(12)) / 1_000_000
    # An estimate of the prompt alone would price the voice as nothing.
    assert BOOK.cost("gpt-4o-mini-tts", Usage(input_tokens=100), measure=speech, at=DEC).unpriced == "usage"
    image = Measure(category="images", usage_reported=False)
    drawn = Usage(input_tokens=100, output_tokens=50)
    assert BOOK.cost("gpt-image-1", drawn, measure=image, at=DEC).unpriced == "usage"


@pytest.mark.parametrize("path", sorted(PRICES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_libyamls_loader_reads_each_bundled_table_as_the_pure_python_one_does(path: Path) -> None:
    assert price_table.SAFE_LOADER is yaml.CSafeLoader  # PyYAML's wheels have libyaml: workers start on it
    assert PriceTable.from_file(path) == PriceTable.from_file(path, loader=yaml.SafeLoader)


def test_a_table_read_again_is_the_same_until_its_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "2026-12-01.yaml"
    path.write_text('version: "t"\neffective_from: "2026-12-01"\nmodels:\n  m: {input: "1.00", output: "2.00"}\n')
    first = PriceTable.from_file(path)
    assert PriceTable.from_file(path) is first
    stat = path.stat()
    path.write_text(path.read_text().replace('"1.00"', '"3.00"'))  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    changed = PriceTable.from_file(path)
    assert changed is not first and changed.prices["m"] != first.prices["m"]
