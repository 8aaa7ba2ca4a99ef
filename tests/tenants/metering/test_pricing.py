"""Pricing: the repository's table, its versions, and plan/tenant overrides."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tenantgate.core.exchange import Usage
from tenantgate.tenants.metering.pricing import Price, PriceBook, PriceOverride, PriceTable

NOV = datetime(2026, 11, 15, tzinfo=UTC).timestamp()


def test_repository_table_prices_a_chat_completion_exactly() -> None:
    book = PriceBook.load()
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
    cost = book.cost("gpt-4o-mini", Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=500_000))
    assert (cost.input_nusd, cost.cached_input_nusd, cost.output_nusd) == (90_000_000, 30_000_000, 300_000_000)
    assert cost.usd == Decimal("0.42")
    assert cost.version == "2026-11-01"


def test_snapshot_names_use_their_family_price_and_longest_prefix_wins() -> None:
    book = PriceBook.load()
    usage = Usage(input_tokens=1_000_000)
    assert book.cost("gpt-4o-mini-2024-07-18", usage).usd == Decimal("0.15")
    assert book.cost("gpt-4o-2024-08-06", usage).usd == Decimal("2.5")
    # The model the upstream answered with is priced before the one requested (e.g. an alias).
    assert book.cost("my-alias", usage, served_model="gpt-4o-mini-2024-07-18").usd == Decimal("0.15")


def test_unknown_model_costs_nothing_and_says_so() -> None:
    cost = PriceBook.load().cost("llama-3-70b", Usage(input_tokens=10, output_tokens=10))
    assert cost.total_nusd == 0 and cost.version is None


def test_audio_tokens_use_audio_prices_where_the_model_has_them() -> None:
    book = PriceBook.load()
    usage = Usage(input_tokens=1_000_000, input_audio_tokens=250_000, output_tokens=0)
    # gpt-4o-audio-preview: text input $2.50, audio input $40 per 1M.
    assert book.cost("gpt-4o-audio-preview", usage).usd == Decimal("0.75") * Decimal("2.5") + Decimal("0.25") * 40


def test_rounding_is_per_event_to_the_nano_dollar() -> None:
    book = PriceBook([PriceTable("t", 0, {"tiny": Price(Decimal("0.0004"), Decimal("0.0006"))})])
    # 0.4 and 0.6 nano-USD per token: rounded half-up once per event, exactly, no float artefacts.
    assert book.cost("tiny", Usage(input_tokens=1)).total_nusd == 0
    assert book.cost("tiny", Usage(input_tokens=2)).total_nusd == 1
    assert book.cost("tiny", Usage(output_tokens=1)).total_nusd == 1
    cost = PriceBook.load().cost("gpt-4.1-nano", Usage(input_tokens=3, cached_input_tokens=1, output_tokens=7))
    assert (cost.input_nusd, cost.cached_input_nusd, cost.output_nusd) == (2 * 100, 25, 7 * 400)


def _table(version: str, day: str, input_price: str) -> PriceTable:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()
    return PriceTable(version, start, {"gpt-x": Price(Decimal(input_price), Decimal(0))})


def test_events_are_priced_with_the_version_in_effect_at_their_time() -> None:
    book = PriceBook([_table("v1", "2026-01-01", "1"), _table("v2", "2026-06-01", "2")])
    usage = Usage(input_tokens=1_000_000)
    assert book.cost("gpt-x", usage, at=datetime(2025, 12, 1, tzinfo=UTC).timestamp()).version == "v1"
    assert book.cost("gpt-x", usage, at=datetime(2026, 3, 1, tzinfo=UTC).timestamp()).usd == 1
    later = book.cost("gpt-x", usage, at=datetime(2026, 7, 1, tzinfo=UTC).timestamp())
    assert (later.usd, later.version) == (2, "v2")


def test_tenant_override_beats_plan_override_beats_table() -> None:
    book = PriceBook.load()
    cheap = Price(Decimal("0.01"), Decimal("0.02"))
    plan_price = Price(Decimal("0.10"), Decimal("0.20"))
    book.set_overrides(
        [
            PriceOverride("po_plan", "gpt-4o-mini", plan_price, effective_from=0, plan_id="plan_gold"),
            PriceOverride("po_ten", "gpt-4o-mini", cheap, effective_from=0, tenant_id="ten_vip"),
            PriceOverride(
                "po_late", "gpt-4o-mini", Price(Decimal(9), Decimal(9)), effective_from=NOV, tenant_id="ten_b"
            ),
        ],
        {"ten_gold": "plan_gold", "ten_vip": "plan_gold"},
    )
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    at = NOV - 86400
    assert book.cost("gpt-4o-mini", usage, tenant_id="ten_vip", at=at).usd == Decimal("0.03")
    gold = book.cost("gpt-4o-mini", usage, tenant_id="ten_gold", at=at)
    assert (gold.usd, gold.version) == (Decimal("0.30"), "2026-11-01+po_plan")
    assert book.cost("gpt-4o-mini", usage, tenant_id="ten_other", at=at).usd == Decimal("0.75")
    # An override applies from its effective time on, not before.
    assert book.cost("gpt-4o-mini", usage, tenant_id="ten_b", at=at).usd == Decimal("0.75")
    assert book.cost("gpt-4o-mini", usage, tenant_id="ten_b", at=NOV + 1).usd == 18


def test_a_broader_override_does_not_swallow_a_more_specific_table_entry() -> None:
    book = PriceBook.load()
    book.set_overrides(
        [PriceOverride("po_4o", "gpt-4o", Price(Decimal(1), Decimal(1)), effective_from=0, tenant_id="ten_a")], {}
    )
    usage = Usage(input_tokens=1_000_000)
    assert book.cost("gpt-4o-2024-08-06", usage, tenant_id="ten_a").usd == 1
    assert book.cost("gpt-4o-mini", usage, tenant_id="ten_a").usd == Decimal("0.15")


def test_invalid_price_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "2026-01-01.yaml").write_text("version: x\nmodels:\n  m: {input: '-1', output: '1'}\n")
    with pytest.raises(ValueError, match="non-negative"):
        PriceBook.load(tmp_path)


def test_global_override_beats_the_table_and_yields_to_plan_and_tenant_overrides() -> None:
    book = PriceBook.load()
    book.set_overrides(
        [
            PriceOverride("po_all", "gpt-4o-mini", Price(Decimal(1), Decimal(0)), effective_from=0),
            PriceOverride("po_gold", "gpt-4o-mini", Price(Decimal(2), Decimal(0)), effective_from=0, plan_id="plan_g"),
            PriceOverride("po_vip", "gpt-4o-mini", Price(Decimal(3), Decimal(0)), effective_from=0, tenant_id="ten_v"),
            PriceOverride("po_llama", "llama-3", Price(Decimal(4), Decimal(0)), effective_from=0),
        ],
        {"ten_gold": "plan_g", "ten_v": "plan_g"},
    )
    usage = Usage(input_tokens=1_000_000)
    assert book.cost("gpt-4o-mini", usage).usd == 1  # no tenant known: the global price still applies
    other = book.cost("gpt-4o-mini", usage, tenant_id="ten_other")
    assert (other.usd, other.version) == (1, "2026-11-01+po_all")
    assert book.cost("gpt-4o-mini", usage, tenant_id="ten_gold").usd == 2
    assert book.cost("gpt-4o-mini", usage, tenant_id="ten_v").usd == 3
    # A model the table does not know gets a price (by prefix) from a global override.
    assert book.cost("llama-3-70b", usage, tenant_id="ten_other").usd == 4
    # A longer table entry still beats a shorter override.
    assert book.cost("gpt-4o-mini-audio-preview", usage).usd == Decimal("0.15")


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
    cost = book.cost("gpt-4o", Usage(input_tokens=1_000_000), tenant_id="ten_a")
    assert (cost.usd, cost.version) == (7, f"2026-11-01+{newer}")
