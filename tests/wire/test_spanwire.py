"""The direct OTLP span encoder: its bytes parse to exactly the message the SDK's own encoder builds."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from tenantgate.wire import spanwire
from tenantgate.wire.spanwire import encode_spans

RESOURCE = Resource.create({"service.name": "tenantgate", "service.instance.id": "w-1", "host.cpus": 2})
SCOPE = InstrumentationScope("tenantgate", "1.2.3")
OTHER_SCOPE = InstrumentationScope("tenantgate.redis", None, "https://opentelemetry.io/schemas/1.26.0")


def _span(
    name: str,
    attributes: dict[str, object],
    *,
    kind: SpanKind = SpanKind.SERVER,
    parent: SpanContext | None = None,
    status: Status | None = None,
    scope: InstrumentationScope = SCOPE,
    trace_state: TraceState | None = None,
    events: tuple[Event, ...] = (),
) -> ReadableSpan:
    context = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1), trace_state or TraceState()
    )
    return ReadableSpan(
        name,
        context=context,
        parent=parent,
        resource=RESOURCE,
        attributes=attributes,
        kind=kind,
        instrumentation_scope=scope,
        status=status or Status(StatusCode.UNSET),
        start_time=1_700_000_000_123_456_789,
        end_time=1_700_000_000_223_456_789,
        events=events,
    )


CASES = {
    "server span, every scalar type": [
        _span(
            "POST /v1/chat/completions",
            {
                "http.request.method": "POST",
                "http.response.status_code": 200,
                "negative": -42,
                "big": 2**62,
                "ratio": 0.25,
                "tenantgate.stream": False,
                "flag": True,
                "empty": "",
                "unicode": "naïve — ok",
            },
        )
    ],
    "client span under a remote parent, error status, arrays": [
        _span(
            "chat gpt-4o-mini",
            {"gen_ai.response.finish_reasons": ("stop", "length"), "ints": [1, 2, 3], "mixed": (1.5, "x", True)},
            kind=SpanKind.CLIENT,
            parent=SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7, True, TraceFlags(1)),
            status=Status(StatusCode.ERROR, "upstream said 500"),
            trace_state=TraceState([("vendor", "abc"), ("other", "x-1")]),
        )
    ],
    "several spans, two scopes, local parent, no attributes": [
        _span("GET /healthz", {}),
        _span(
            "EVALSHA",
            {"db.system.name": "redis"},
            kind=SpanKind.CLIENT,
            parent=SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0x1111111111111111, False, TraceFlags(1)),
            scope=OTHER_SCOPE,
            status=Status(StatusCode.OK),
        ),
        _span("POST /v1/embeddings", {"gen_ai.usage.input_tokens": 12}),
    ],
    "a span with events (handed to the SDK's encoder)": [
        _span("with event", {"a": 1}, events=(Event("retry", {"attempt": 2}, timestamp=1_700_000_000_200_000_000),))
    ],
}


@pytest.mark.parametrize("spans", CASES.values(), ids=CASES.keys())
def test_encoded_bytes_parse_to_the_sdk_encoders_message(spans: list[ReadableSpan]) -> None:
    expected = sdk_encode_spans(spans)
    first = encode_spans(spans)
    assert ExportTraceServiceRequest.FromString(first) == expected
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))  # again: now from the encoder's caches
    assert ours == expected
    assert len(ours.resource_spans[0].scope_spans[0].spans) >= 1


def test_an_attribute_of_an_unknown_type_is_left_out_not_the_whole_batch() -> None:
    spans = [_span("odd", {"fine": 1, "odd": object()})]
    parsed = ExportTraceServiceRequest.FromString(encode_spans(spans))
    keys = [kv.key for kv in parsed.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert keys == ["fine"]


def test_per_request_identifiers_do_not_fill_the_encoders_cache() -> None:
    """Repeating attributes are encoded once and reused; a request id or a remaining count, new on every span, is
    encoded each time instead of filling the bounded cache (and flushing out what does repeat)."""
    spanwire._FIELDS.clear()
    spans = [
        _span(
            "chat gpt-4o-mini",
            {
                "gen_ai.request.model": "gpt-4o-mini",
                "tenantgate.request.id": f"req_{n:032x}",
                "gen_ai.response.id": f"chatcmpl-{n}",
                "tenantgate.ratelimit.remaining_requests": 10_000 - n,
            },
        )
        for n in range(200)
    ]
    parsed = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert parsed == sdk_encode_spans(spans)
    # Only what repeats is cached. (Other entries may be there: a gateway of an earlier test in this process can still
    # be exporting its resource's attributes on its batcher's thread.)
    cached = {key for _, key, _ in spanwire._FIELDS}
    assert "gen_ai.request.model" in cached
    assert cached.isdisjoint({"tenantgate.request.id", "gen_ai.response.id", "tenantgate.ratelimit.remaining_requests"})
