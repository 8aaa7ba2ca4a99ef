"""A usage event: what one proxied exchange consumed, as it is spooled (one JSON line) and stored (one row).

The event id is minted by the gateway when the event is first recorded and travels with it through spool and
replays; it is the idempotency key of the store. The request id is stored beside it but is not the key: callers
may send their own ``x-request-id``, and reusing one must not make a second request free.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, overload

import orjson

from tenantgate.core.exchange import NO_TOOL_CALLS, Exchange, ToolCalls, Usage
from tenantgate.ids import new_id
from tenantgate.tenants.metering.pricing import UNKNOWN_OPTION, Measure
from tenantgate.tenants.metering.usage_event import UsageEvent

# The OpenAI Usage API's families, by path. Everything else proxied is "other" (priced and exported, but not
# part of any family's usage endpoint).
_CATEGORIES = {
    "/v1/chat/completions": "completions",
    "/v1/completions": "completions",
    "/v1/responses": "completions",
    "/v1/responses/compact": "completions",
    # A background response's completion, first seen on a retrieve or a cancel (reads are otherwise not billable).
    "/v1/responses/{response_id}": "completions",
    "/v1/responses/{response_id}/cancel": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/moderations": "moderations",
    "/v1/images/generations": "images",
    "/v1/images/edits": "images",
    "/v1/images/variations": "images",
    "/v1/audio/speech": "audio_speeches",
    "/v1/audio/transcriptions": "audio_transcriptions",
    "/v1/audio/translations": "audio_transcriptions",
}
CATEGORIES = ("completions", "embeddings", "moderations", "images", "audio_speeches", "audio_transcriptions")
_UNMETERED_PREFIXES = ("/v1/models",)
_TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "image_tokens",
)
_MAX_COUNT = 2**62


def category_of(path: str) -> str:
    return _CATEGORIES.get(path, "other")


def is_metered(exchange: Exchange) -> bool:
    return not exchange.path.startswith(_UNMETERED_PREFIXES)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and 0 < value < _MAX_COUNT else 0


def _quantity(category: str, payload: dict[str, Any] | None) -> int:
    """Units of the non-token families: images generated, characters spoken."""
    if not payload:
        return 0
    if category == "images":
        n = payload.get("n", 1)
        return _count(n) if n is not None else 1
    if category == "audio_speeches" and isinstance(payload.get("input"), str):
        return len(payload["input"])
    return 0


# Request options that choose a price (image quality and size, service tier) are caller-chosen strings: an event
# keeps one only if it looks like an option (any other value cannot have a price anyway).
_OPTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}")
INVALID_OPTION = "(invalid)"


def _option(payload: dict[str, Any] | None, name: str) -> str | None:
    value = payload.get(name) if payload else None
    if value is None:
        return None
    return value if isinstance(value, str) and _OPTION.fullmatch(value) else INVALID_OPTION


def request_options(category: str, payload: dict[str, Any] | None) -> dict[str, str | None]:
    """The options of a request body that its price depends on."""
    images = category == "images"
    return {
        "service_tier": _option(payload, "service_tier"),
        "image_size": _option(payload, "size") if images else None,
        "image_quality": _option(payload, "quality") if images else None,
    }


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else max(0, min(int(seconds * 1000), 2**31 - 1))


MAX_TEXT_CHARS = 256
"""Longest model name, upstream model, error type... an event stores (longer ones are cut)."""


def from_exchange(exchange: Exchange, *, settled: bool) -> UsageEvent:
    """The event of an exchange. ``settled``: the upstream answered (usage final); otherwise the exchange was
    refused before or failed on the way to the upstream, and the event is recorded for analytics only."""
    principal = exchange.ctx.principal
    category = category_of(exchange.path)
    # Only model work is billable: reads, lists, deletes and cancels of stored objects are recorded as operations.
    billable = settled and 0 < exchange.status < 400 and exchange.model_work
    usage = (exchange.usage or _NO_USAGE) if billable else _NO_USAGE
    now = time.perf_counter()
    options = request_options(category, exchange.payload)
    tools = exchange.tools if billable else NO_TOOL_CALLS
    return {
        "id": exchange.event_id or new_id("evt"),
        "request_id": exchange.ctx.request_id,
        "occurred_at": exchange.started_at,
        "tenant_id": principal.tenant_id,
        "api_key_id": principal.key_id,
        "endpoint": _text(exchange.path),
        "category": category,
        # Every billable event names a model: a request without one (a stored response read) is named by its answer.
        "model": _text(exchange.model or exchange.response_model or exchange.upstream_model or ""),
        "upstream": exchange.upstream_name,
        "upstream_model": _text(exchange.upstream_model),
        "response_model": _text(exchange.response_model),
        "status": exchange.status,
        "stream": exchange.stream,
        "billable": billable,
        "batch": False,
        "usage_source": exchange.usage_source if billable and exchange.usage is not None else None,
        "input_tokens": _count(usage.input_tokens),
        "cached_input_tokens": _count(usage.cached_input_tokens),
        "output_tokens": _count(usage.output_tokens),
        "reasoning_tokens": _count(usage.reasoning_tokens),
        "input_audio_tokens": _count(usage.input_audio_tokens),
        "output_audio_tokens": _count(usage.output_audio_tokens),
        "image_tokens": _count(usage.image_tokens),
        "quantity": (_quantity(category, exchange.payload) if exchange.quantity is None else _count(exchange.quantity))
        if billable
        else 0,
        "latency_ms": _ms(now - exchange.started),
        "ttft_ms": _ms(exchange.time_to_first_token) if exchange.stream else None,
        "client_disconnected": exchange.client_disconnected,
        "error_type": _text(exchange.error_type),
        "attempts": exchange.attempts,
        "service_tier": options["service_tier"],
        "image_size": options["image_size"],
        "image_quality": options["image_quality"],
        "web_search_calls": _count(tools.web_search_calls),
        "file_search_calls": _count(tools.file_search_calls),
        "code_interpreter_sessions": _count(tools.code_interpreter_sessions),
    }


_NO_USAGE = Usage()
TOOL_FIELDS = ("web_search_calls", "file_search_calls", "code_interpreter_sessions")


def tools_of(event: Mapping[str, Any]) -> ToolCalls:
    """The hosted tools an event's answer used (lines spooled before tools were metered: none)."""
    return ToolCalls(*(_count(event.get(name, 0)) for name in TOOL_FIELDS))


@overload
def _text(value: str) -> str: ...
@overload
def _text(value: str | None) -> str | None: ...
def _text(value: str | None) -> str | None:
    """Text chosen by the caller or the upstream, as an event may store it."""
    if value and ("\x00" in value or len(value) > MAX_TEXT_CHARS):
        # PostgreSQL text cannot hold U+0000, and a model name of kilobytes would overflow the rollups' primary
        # key index: one such event would fail every batch it is in (no usage stored for anyone).
        return value.replace("\x00", "\ufffd")[:MAX_TEXT_CHARS]
    return value


def encode(event: UsageEvent) -> bytes:
    return orjson.dumps(event) + b"\n"


def usage_of(event: dict[str, Any]) -> Usage:
    return Usage(**{name: event[name] for name in _TOKEN_FIELDS})


def measure_of(event: dict[str, Any]) -> Measure:
    """What pricing needs of an event beyond its tokens. Events spooled before options were recorded lack them:
    an image's size is then unknown (not the default)."""
    images = event["category"] == "images"
    return Measure(
        category=event["category"],
        quantity=event["quantity"],
        usage_reported=event["usage_source"] == "upstream",
        # A batch's lines are priced at the Batch API's price whatever their bodies asked for.
        service_tier="batch" if event.get("batch") is True else event.get("service_tier"),
        image_size=event.get("image_size", UNKNOWN_OPTION) if images else None,
        image_quality=event.get("image_quality", UNKNOWN_OPTION) if images else None,
        tools=tools_of(event),
    )


def measure_of_exchange(exchange: Exchange) -> Measure:
    """The same, of a finished exchange (for budgets, which are charged before its event is written)."""
    category = category_of(exchange.path)
    options = request_options(category, exchange.payload)
    quantity = _quantity(category, exchange.payload) if exchange.quantity is None else _count(exchange.quantity)
    return Measure(
        category=category,
        quantity=quantity,
        usage_reported=exchange.usage_source == "upstream",
        service_tier=options["service_tier"],
        image_size=options["image_size"],
        image_quality=options["image_quality"],
        tools=exchange.tools,
    )


def occurred_at(event: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(event["occurred_at"], UTC)
