"""Each family's price: images by quality and size or by tokens, speech by characters or tokens, transcription by
the second or by tokens, embeddings, moderation (free), realtime, and the batch and flex tiers.

Expected amounts are written out from OpenAI's list prices, not read from the price file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tenantgate.core.exchange import Usage
from tenantgate.tenants.metering.events import INVALID_OPTION
from tenantgate.tenants.metering.pricing import UNKNOWN_OPTION, Measure, Price, PriceBook, PriceOverride

DEC = datetime(2026, 12, 8, tzinfo=UTC).timestamp()
BOOK = PriceBook.load()
NONE = Usage()


def _cost(model: str, usage: Usage = NONE, **measure: object) -> tuple[Decimal | None, str | None]:
    cost = BOOK.cost(model, usage, measure=Measure(**measure), at=DEC)  # type: ignore[arg-type]
    return (cost.usd if cost.priced else None), cost.unpriced


def _m(input_: str, output: str = "0") -> Decimal:
    return Decimal(input_) / 1_000_000 if output == "0" else (Decimal(input_) + Decimal(output)) / 1_000_000


@pytest.mark.parametrize(
    ("model", "quality", "size", "count", "usd"),
    [
        ("dall-e-3", None, None, 1, "0.040"),
        ("dall-e-3", "auto", "auto", 1, "0.040"),
        ("dall-e-3", "standard", "1024x1792", 2, "0.160"),
        ("dall-e-3", "hd", "1024x1024", 1, "0.080"),
        ("dall-e-3", "hd", "1792x1024", 3, "0.360"),
        ("dall-e-2", None, "256x256", 4, "0.064"),
        ("dall-e-2", "standard", "512x512", 1, "0.018"),
        ("dall-e-2", None, None, 10, "0.200"),
    ],
)
def test_dall_e_costs_its_price_per_image_for_the_quality_and_size_asked_for(
    model: str, quality: str | None, size: str | None, count: int, usd: str
) -> None:
    cost = BOOK.cost(
        model,
        Usage(input_tokens=12),  # the prompt estimate an image answer gets: not what is billed
        measure=Measure(category="images", quantity=count, image_quality=quality, image_size=size),
        at=DEC,
    )
    assert (cost.usd, cost.unit_nusd, cost.unpriced) == (Decimal(usd), cost.total_nusd, None)
    assert cost.unit_price == Decimal(usd) / count


@pytest.mark.parametrize(
    ("model", "quality", "size"),
    [
        ("dall-e-3", "standard", "999x999"),
        ("dall-e-3", "ultra", "1024x1024"),
        ("dall-e-2", "hd", "1024x1024"),
        ("dall-e-3", INVALID_OPTION, None),
        ("dall-e-3", None, UNKNOWN_OPTION),  # spooled before sizes were recorded: not assumed to be the default
    ],
)
def test_an_image_size_or_quality_without_a_price_is_unpriced(model: str, quality: str, size: str) -> None:
    measure = {"category": "images", "quantity": 1, "image_quality": quality, "image_size": size}
    assert _cost(model, **measure) == (None, "option")


def test_an_image_count_that_is_not_known_is_unpriced_not_free() -> None:
    assert _cost("dall-e-3", category="images", quantity=0) == (None, "usage")


def test_gpt_image_1_costs_its_text_input_image_input_and_image_output_tokens() -> None:
    usage = Usage(input_tokens=50, image_tokens=30, output_tokens=4160)
    # $5 per 1M text input, $10 per 1M image input, $40 per 1M image output.
    expected = (20 * Decimal(5) + 30 * Decimal(10) + 4160 * Decimal(40)) / 1_000_000
    assert _cost("gpt-image-1", usage, category="images", quantity=1) == (expected, None)
    # Without the answer's token count, an estimate would price the prompt only: unpriced instead.
    assert _cost("gpt-image-1", usage, category="images", quantity=1, usage_reported=False) == (None, "usage")


def test_speech_costs_characters_or_tokens() -> None:
    assert _cost("tts-1", category="audio_speeches", quantity=1000) == (Decimal("0.015"), None)
    assert _cost("tts-1-hd", category="audio_speeches", quantity=1000) == (Decimal("0.030"), None)
    assert _cost("tts-1", category="audio_speeches", quantity=0) == (None, "usage")
    tokens = Usage(input_tokens=100, output_tokens=2000)
    expected = (100 * Decimal("0.60") + 2000 * Decimal(12)) / 1_000_000
    assert _cost("gpt-4o-mini-tts", tokens, category="audio_speeches", quantity=400) == (expected, None)
    # A binary audio answer reports no tokens: the characters do not price a token-priced voice.
    assert _cost("gpt-4o-mini-tts", category="audio_speeches", quantity=400, usage_reported=False) == (None, "usage")


def test_transcription_costs_seconds_or_tokens() -> None:
    # whisper-1: $0.006 per minute, by the second (the event's quantity is whole seconds, rounded up).
    assert _cost("whisper-1", category="audio_transcriptions", quantity=61) == (Decimal("0.0061"), None)
    assert _cost("whisper-1", category="audio_transcriptions", quantity=0, usage_reported=False) == (None, "usage")
    usage = Usage(input_tokens=100, input_audio_tokens=80, output_tokens=50)
    big = (20 * Decimal("2.50") + 80 * Decimal(6) + 50 * Decimal(10)) / 1_000_000
    mini = (20 * Decimal("1.25") + 80 * Decimal(3) + 50 * Decimal(5)) / 1_000_000
    assert _cost("gpt-4o-transcribe", usage, category="audio_transcriptions") == (big, None)
    assert _cost("gpt-4o-mini-transcribe", usage, category="audio_transcriptions") == (mini, None)
    text_only = _cost("gpt-4o-transcribe", NONE, category="audio_transcriptions", usage_reported=False)
    assert text_only == (None, "usage")


def test_embeddings_and_moderation() -> None:
    assert _cost("text-embedding-3-large", Usage(input_tokens=1_000_000), category="embeddings") == (
        Decimal("0.13"),
        None,
    )
    # Moderation is free: a price of 0 with a version, which is not the same as no price.
    cost = BOOK.cost("omni-moderation-latest", Usage(input_tokens=500), measure=Measure(category="moderations"), at=DEC)
    assert (cost.total_nusd, cost.version, cost.unpriced) == (0, BOOK.table_at(DEC).version, None)


def test_realtime_models_price_text_and_audio_apart() -> None:
    usage = Usage(input_tokens=1000, cached_input_tokens=100, input_audio_tokens=500, output_tokens=800)
    usage.output_audio_tokens = 600
    # gpt-realtime: text 4.00 / cached 0.40 / 16.00, audio 32.00 / 64.00 per 1M.
    expected = (400 * Decimal(4) + 100 * Decimal("0.40") + 500 * Decimal(32) + 200 * Decimal(16) + 600 * 64) / 10**6
    assert _cost("gpt-realtime", usage) == (expected, None)


def test_flex_and_batch_cost_half_where_the_model_has_them_and_are_unpriced_elsewhere() -> None:
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=200_000, output_tokens=100_000)
    standard = Decimal("0.8") * Decimal("1.25") + Decimal("0.2") * Decimal("0.125") + Decimal("0.1") * 10
    assert _cost("gpt-5", usage) == (standard, None)
    for tier in ("auto", "default"):
        assert _cost("gpt-5", usage, service_tier=tier) == (standard, None)
    assert _cost("gpt-5", usage, service_tier="flex") == (standard / 2, None)
    o3 = Decimal("0.8") * 2 + Decimal("0.2") * Decimal("0.5") + Decimal("0.8")
    assert _cost("o3", usage, service_tier="flex") == (o3 / 2, None)
    assert _cost("gpt-4o-mini", usage, service_tier="batch")[0] == _cost("gpt-4o-mini", usage)[0] / 2  # type: ignore[operator]
    for model, tier in [("gpt-4o", "flex"), ("o3-pro", "flex"), ("gpt-5", "priority"), ("gpt-5", INVALID_OPTION)]:
        assert _cost(model, usage, service_tier=tier) == (None, "tier"), (model, tier)
    assert _cost("gpt-realtime", usage, service_tier="batch") == (None, "tier")
    assert _cost("dall-e-3", category="images", quantity=1, service_tier="flex") == (None, "tier")


def test_an_operators_override_is_the_standard_rate_and_pays_the_tables_tier_fractions() -> None:
    book = PriceBook.load()
    book.set_overrides(
        [
            PriceOverride("po_5", "gpt-5", Price(Decimal(1), Decimal(2)), effective_from=0, tenant_id="ten_a"),
            PriceOverride("po_4o", "gpt-4o", Price(Decimal(1), Decimal(2)), effective_from=0, tenant_id="ten_a"),
            PriceOverride("po_x", "in-house-llm", Price(Decimal(1), Decimal(2)), effective_from=0, tenant_id="ten_a"),
        ],
        {},
    )
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)

    def usd(model: str, tier: str | None) -> Decimal | None:
        cost = book.cost(model, usage, measure=Measure(service_tier=tier), tenant_id="ten_a", at=DEC)
        assert cost.unpriced is None and cost.version is not None and "+po_" in cost.version
        return cost.usd

    # The table halves gpt-5 for flex and batch: the negotiated rate is halved too, as upstream's cost is.
    assert usd("gpt-5", None) == 3
    assert usd("gpt-5", "flex") == usd("gpt-5", "batch") == Decimal("1.5")
    # Where the table has no fraction for a tier (gpt-4o has no flex; a model it does not list), the override
    # prices the tier in full rather than leaving it unpriced.
    assert usd("gpt-4o", "batch") == Decimal("1.5")
    assert usd("gpt-4o", "flex") == 3
    assert usd("in-house-llm", "batch") == usd("in-house-llm", "priority") == 3


def test_a_token_price_never_prices_a_family_sold_by_the_unit_as_zero() -> None:
    book = PriceBook.load()
    # An operator's token price for dall-e-3 cannot price an image answer, which reports no tokens.
    book.set_overrides([PriceOverride("po_d", "dall-e-3", Price(Decimal(1), Decimal(1)), effective_from=0)], {})
    measure = Measure(category="images", quantity=1, usage_reported=False)
    assert book.cost("dall-e-3", Usage(input_tokens=9), measure=measure, at=DEC).unpriced == "usage"
    # A per-image price asked for a chat completion is not a price of that completion.
    assert _cost("dall-e-3", Usage(input_tokens=9)) == (None, "endpoint")
    assert _cost("whisper-1", Usage(input_tokens=9), category="audio_speeches", quantity=9) == (None, "endpoint")
