"""Billing reconciles: for a random mix of priced and unpriced requests over every family the gateway proxies,
the costs API's total, the invoice's total and the sum of the stored events' costs are the same number, and equal
a computation from OpenAI's list prices written out here (not read from the price file). Unpriced usage appears
as unpriced everywhere and is never counted as 0 USD; no cost line item lacks a model name.

Requests go through the official SDK to the dev upstream, on SQLite and Postgres. The expected cost of each comes
from what its client saw (the usage in its answer, the seconds of its audio, the images it asked for).
"""

from __future__ import annotations

import io
import math
import os
import random
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import openai
import orjson

from tests.platform.usage.test_audio_seconds import _wav
from tests.support.gateway import Gateway
from tests.support.metering import admin_sdk, all_events, flush

M = Decimal(1_000_000)
# OpenAI's list prices, USD per 1M tokens: (input, cached input, output).
TOKENS = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), Decimal("0.60")),
    "gpt-5": (Decimal("1.25"), Decimal("0.125"), Decimal("10.00")),
    "o3-pro": (Decimal("20.00"), Decimal("20.00"), Decimal("80.00")),
    "gpt-4.1": (Decimal("2.00"), Decimal("0.50"), Decimal("8.00")),
    "gpt-3.5-turbo-instruct": (Decimal("1.50"), Decimal("1.50"), Decimal("2.00")),
    "text-embedding-3-small": (Decimal("0.02"), Decimal("0.02"), Decimal(0)),
}
PER_IMAGE = {("dall-e-3", "hd", "1792x1024"): Decimal("0.120"), ("dall-e-2", "standard", "256x256"): Decimal("0.016")}
TTS_1_PER_CHARACTER = Decimal("15.00") / M
WHISPER_PER_SECOND = Decimal("0.006") / 60
PROMPT = "Summarise the quarterly report for the board"


@dataclass
class Sent:
    case: str
    model: str
    expected_usd: Decimal | None
    """None: the request must be stored unpriced (for ``reason``)."""
    reason: str | None = None
    images: int = 0


def _tokens(
    model: str, input_tokens: int, output_tokens: int, cached: int = 0, factor: Decimal = Decimal(1)
) -> Decimal:
    price_in, price_cached, price_out = TOKENS[model]
    return factor * ((input_tokens - cached) * price_in + cached * price_cached + output_tokens * price_out) / M


def _chat(client: openai.OpenAI, model: str, **extra: Any) -> tuple[str, Any]:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], **extra
    )
    return raw.headers["x-request-id"], raw.parse().usage


def _chat_case(model: str, priced: bool, **extra: Any) -> Callable[[openai.OpenAI], tuple[str, Sent]]:
    def send(client: openai.OpenAI) -> tuple[str, Sent]:
        request_id, usage = _chat(client, model, **extra)
        if not priced:
            reason = "tier" if extra.get("service_tier") else "model"
            return request_id, Sent("chat", model, None, reason)
        cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
        base = model.removesuffix("-2024-07-18")
        factor = Decimal("0.5") if extra.get("service_tier") == "flex" else Decimal(1)
        usd = _tokens(base, usage.prompt_tokens, usage.completion_tokens, cached or 0, factor)
        return request_id, Sent("chat", model, usd)

    return send


def _completion(model: str, priced: bool) -> Callable[[openai.OpenAI], tuple[str, Sent]]:
    def send(client: openai.OpenAI) -> tuple[str, Sent]:
        raw = client.completions.with_raw_response.create(model=model, prompt=PROMPT, max_tokens=8)
        usage = raw.parse().usage
        assert usage is not None
        usd = _tokens(model, usage.prompt_tokens, usage.completion_tokens) if priced else None
        return raw.headers["x-request-id"], Sent("completions", model, usd, None if priced else "model")

    return send


def _embedding(model: str, priced: bool) -> Callable[[openai.OpenAI], tuple[str, Sent]]:
    def send(client: openai.OpenAI) -> tuple[str, Sent]:
        raw = client.embeddings.with_raw_response.create(model=model, input=PROMPT)
        usage = raw.parse().usage
        usd = _tokens(model, usage.prompt_tokens, 0) if priced else None
        return raw.headers["x-request-id"], Sent("embeddings", model, usd, None if priced else "model")

    return send


def _response(model: str, priced: bool) -> Callable[[openai.OpenAI], tuple[str, Sent]]:
    def send(client: openai.OpenAI) -> tuple[str, Sent]:
        raw = client.responses.with_raw_response.create(model=model, input=PROMPT, store=False)
        usage = raw.parse().usage
        assert usage is not None
        cached = usage.input_tokens_details.cached_tokens
        usd = _tokens(model, usage.input_tokens, usage.output_tokens, cached) if priced else None
        return raw.headers["x-request-id"], Sent("responses", model, usd, None if priced else "model")

    return send


def _moderation(model: str, priced: bool) -> Callable[[openai.OpenAI], tuple[str, Sent]]:
    def send(client: openai.OpenAI) -> tuple[str, Sent]:
        raw = client.moderations.with_raw_response.create(model=model, input=PROMPT)
        raw.parse()
        # Moderation is free: priced at 0, which is not the same as unpriced.
        return raw.headers["x-request-id"], Sent(
            "moderations", model, Decimal(0) if priced else None, None if priced else "model"
        )

    return send


def _image(model: str, quality: str | None, size: str | None, n: int, reason: str | None = None) -> Any:
    def send(client: openai.OpenAI) -> tuple[str, Sent]:
        options: dict[str, Any] = {k: v for k, v in (("quality", quality), ("size", size)) if v is not None}
        raw = client.images.with_raw_response.generate(model=model, prompt=PROMPT, n=n, **options)
        answer = raw.parse()
        if reason is not None:
            return raw.headers["x-request-id"], Sent("images", model, None, reason, images=n)
        if model == "gpt-image-1":
            usage = answer.usage
            assert usage is not None
            image_in = usage.input_tokens_details.image_tokens
            text_in = usage.input_tokens - image_in
            usd = (text_in * Decimal(5) + image_in * Decimal(10) + usage.output_tokens * Decimal(40)) / M
        else:
            usd = n * PER_IMAGE[(model, quality or "standard", size or "1024x1024")]
        return raw.headers["x-request-id"], Sent("images", model, usd, images=n)

    return send


def _speech(model: str, sse: bool = False, reason: str | None = None) -> Any:
    text = "A sentence of speech, " * 3

    def send(client: openai.OpenAI) -> tuple[str, Sent]:
        extra: dict[str, Any] = {"stream_format": "sse"} if sse else {}
        raw = client.audio.speech.with_raw_response.create(model=model, voice="alloy", input=text, **extra)
        body = raw.parse().content
        if reason is not None:
            return raw.headers["x-request-id"], Sent("speech", model, None, reason)
        if model == "tts-1":
            return raw.headers["x-request-id"], Sent("speech", model, len(text) * TTS_1_PER_CHARACTER)
        done = next(e for e in _sse_data(body) if e.get("type") == "speech.audio.done")
        usage = done["usage"]
        usd = (usage["input_tokens"] * Decimal("0.60") + usage["output_tokens"] * Decimal(12)) / M
        return raw.headers["x-request-id"], Sent("speech", model, usd)

    return send


def _sse_data(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[5:]) for line in body.splitlines() if line.startswith(b"data:")]


def _transcription(model: str, reason: str | None = None) -> Any:
    def send(client: openai.OpenAI) -> tuple[str, Sent]:
        raw = client.audio.transcriptions.with_raw_response.create(model=model, file=("a.wav", _wav(2.2)))
        usage = raw.parse().usage
        if reason is not None:
            return raw.headers["x-request-id"], Sent("transcription", model, None, reason)
        assert usage is not None
        if usage.type == "duration":
            usd = math.ceil(usage.seconds) * WHISPER_PER_SECOND
        else:
            details = usage.input_token_details
            audio = (details.audio_tokens or 0) if details else 0
            text_price, audio_price, out_price = {
                "gpt-4o-transcribe": (Decimal("2.50"), Decimal(6), Decimal(10)),
                "gpt-4o-mini-transcribe": (Decimal("1.25"), Decimal(3), Decimal(5)),
            }[model]
            usd = (
                (usage.input_tokens - audio) * text_price + audio * audio_price + usage.output_tokens * out_price
            ) / M
        return raw.headers["x-request-id"], Sent("transcription", model, usd)

    return send


def _translation(response_format: str) -> Any:
    def send(client: openai.OpenAI) -> tuple[str, Sent]:
        audio = _wav(3.4)
        raw = client.audio.translations.with_raw_response.create(
            model="whisper-1",
            file=("b.wav", audio),
            response_format=response_format,  # type: ignore[arg-type]
        )
        answer = raw.parse()
        if response_format == "json":  # no duration in the answer: billed by the uploaded WAV's length
            with wave.open(io.BytesIO(audio)) as sent:
                seconds = math.ceil(sent.getnframes() / sent.getframerate())
            return raw.headers["x-request-id"], Sent("translation", "whisper-1", seconds * WHISPER_PER_SECOND)
        duration = answer.duration  # type: ignore[union-attr]
        return raw.headers["x-request-id"], Sent("translation", "whisper-1", math.ceil(duration) * WHISPER_PER_SECOND)

    return send


CASES: dict[str, Callable[[openai.OpenAI], tuple[str, Sent]]] = {
    "chat gpt-4o-mini": _chat_case("gpt-4o-mini", True),
    "chat dated snapshot": _chat_case("gpt-4o-mini-2024-07-18", True),
    "chat gpt-5 flex": _chat_case("gpt-5", True, service_tier="flex"),
    "chat o3-pro": _chat_case("o3-pro", True),
    "chat gpt-5 priority": _chat_case("gpt-5", False, service_tier="priority"),
    "chat unknown model": _chat_case("acme-llm-70b", False),
    "completion": _completion("gpt-3.5-turbo-instruct", True),
    "completion unknown": _completion("davinci-003", False),
    "embedding": _embedding("text-embedding-3-small", True),
    "embedding unknown": _embedding("acme-embed", False),
    "response": _response("gpt-4.1", True),
    "response unknown": _response("gpt-4.1-turbo-x", False),
    "moderation": _moderation("omni-moderation-latest", True),
    "moderation unknown": _moderation("acme-moderation", False),
    "image dall-e-3 hd": _image("dall-e-3", "hd", "1792x1024", 1),
    "image dall-e-2": _image("dall-e-2", None, "256x256", 2),
    "image gpt-image-1": _image("gpt-image-1", "low", "1024x1024", 1),
    "image unknown size": _image("dall-e-3", None, "999x999", 1, reason="option"),
    "image unknown model": _image("acme-image", None, None, 1, reason="model"),
    "speech tts-1": _speech("tts-1"),
    "speech tokens": _speech("gpt-4o-mini-tts", sse=True),
    "speech tokens unreported": _speech("gpt-4o-mini-tts", reason="usage"),
    "speech unknown": _speech("acme-voice", reason="model"),
    "transcription whisper": _transcription("whisper-1"),
    "transcription tokens": _transcription("gpt-4o-transcribe"),
    "transcription mini": _transcription("gpt-4o-mini-transcribe"),
    "transcription unknown": _transcription("acme-stt", reason="model"),
    "translation seconds": _translation("verbose_json"),
    "translation without duration": _translation("json"),
}


def _events(gateway: Gateway, tenant_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        flush(gateway)
        events = all_events(gateway, tenant_id=tenant_id)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_costs_invoices_and_events_agree_with_list_prices_and_show_unpriced_usage(gateway: Gateway) -> None:
    created = gateway.new_key("reconciled")
    tenant_id, client = created["tenant_id"], gateway.client(created["key"])
    seed = int(os.environ.get("TG_TEST_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    cases = list(CASES) + [rng.choice(list(CASES)) for _ in range(10)]  # every case at least once
    rng.shuffle(cases)
    started = int(time.time())
    sent = dict(CASES[case](client) for case in cases)

    events = _events(gateway, tenant_id, len(sent))
    assert len(events) == len(sent), f"seed {seed}"
    by_request = {event["request_id"]: event for event in events}
    expected_nanos = Decimal(0)
    for request_id, want in sent.items():
        event, context = by_request[request_id], f"seed {seed}: {want.case} {want.model}"
        assert event["billable"] and event["model"] == want.model, context
        if want.expected_usd is None:
            assert (event["unpriced"], event["cost_usd"], event["price_version"]) == (want.reason, None, None), context
            continue
        assert event["unpriced"] is None and event["price_version"], context
        # Rounded to the nano-dollar once per priced part (input, cached input, output, or units).
        assert abs(Decimal(event["cost_usd"]) - want.expected_usd) <= Decimal("2e-9"), context
        expected_nanos += want.expected_usd * 10**9
    event_nanos = sum(Decimal(e["cost_usd"]) * 10**9 for e in events if e["cost_usd"] is not None)
    assert abs(event_nanos - expected_nanos) <= 2 * len(events), f"seed {seed}"
    unpriced = sum(want.expected_usd is None for want in sent.values())
    assert sum(e["unpriced"] is not None for e in events) == unpriced > 0

    # The costs API: the same total, the unpriced requests counted apart (not as 0 USD), and by line item the same
    # total again, every line item naming its model, the unpriced ones with no amount at all.
    window: dict[str, Any] = {"start_time": started - 60, "end_time": int(time.time()) + 60, "project_ids": [tenant_id]}
    costs = admin_sdk(gateway).admin.organization.usage.costs
    results = [r for bucket in costs(**window).data for r in bucket.results]
    assert round(sum(Decimal(str(r.amount.value)) for r in results if r.amount) * 10**9) == event_nanos
    assert sum(r.model_extra["unpriced_requests"] for r in results if r.model_extra) == unpriced
    items = [r for bucket in costs(**window, group_by=["line_item"]).data for r in bucket.results]
    assert all(r.line_item and not r.line_item.startswith(",") and ", " in r.line_item for r in items)
    priced_items = [r for r in items if r.amount is not None]
    assert round(sum(Decimal(str(r.amount.value)) for r in priced_items if r.amount) * 10**9) == event_nanos
    unpriced_items = {
        r.line_item: r.model_extra["unpriced_requests"] for r in items if r.amount is None and r.model_extra
    }
    expected_items: dict[str, int] = {}
    for want in sent.values():
        if want.expected_usd is None:
            expected_items[f"{want.model}, unpriced"] = expected_items.get(f"{want.model}, unpriced", 0) + 1
    assert unpriced_items == expected_items, f"seed {seed}"
    assert all(item.endswith(", unpriced") for item in unpriced_items)

    # The invoice: the same total; lines of models without a price have no cost (null), not a cost of 0.
    response = gateway.admin("GET", "/admin/usage/invoices", params={**window, "tenant_id": tenant_id})
    (invoice,) = response.json()["data"]
    assert Decimal(invoice["total"]["cost_usd"]) * 10**9 == event_nanos
    assert invoice["total"]["unpriced_requests"] == unpriced
    for line in invoice["lines"]:
        assert line["model"], line
        if line["unpriced_requests"] == line["requests"]:
            assert line["cost_usd"] is None, line
    free = next(line for line in invoice["lines"] if line["model"] == "omni-moderation-latest")
    assert (free["cost_usd"], free["unpriced_requests"]) == ("0.000000000", 0)
    units = {(line["model"], line["category"]): line for line in invoice["lines"]}
    assert sum(line["images"] for line in invoice["lines"]) == sum(want.images for want in sent.values())
    assert units[("tts-1", "audio_speeches")]["characters"] > 0
    assert units[("whisper-1", "audio_transcriptions")]["seconds"] > 0
