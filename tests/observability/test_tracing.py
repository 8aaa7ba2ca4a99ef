"""Spans a tracing backend receives for real requests: names, GenAI attributes, parent/child structure."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tenantgate.observability.tracing import parse_traceparent
from tenantgate.platform.proxy.hooks import Hooks
from tests.observability.conftest import RecordingUpstream, RefuseWith429
from tests.support.services import free_port

MESSAGES = [{"role": "user", "content": "a secret prompt about pelicans"}]


def _child_of(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None and child.context is not None and parent.context is not None
    return child.parent.span_id == parent.context.span_id and child.context.trace_id == parent.context.trace_id


def _all_attribute_text(spans: list[ReadableSpan]) -> str:
    return " ".join(f"{k}={v}" for span in spans for k, v in (span.attributes or {}).items())


def test_non_streamed_chat_makes_a_server_span_and_a_genai_client_span(traced_factory, dev_upstream) -> None:
    traced = traced_factory(upstream_base_url=dev_upstream)
    key = traced.gateway.new_key()
    traced.clear()
    raw = traced.gateway.client(key["key"]).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=50, temperature=0.2
    )
    completion = raw.parse()
    spans = traced.named("POST /v1/chat/completions", "chat gpt-4o-mini")
    server, client = spans["POST /v1/chat/completions"], spans["chat gpt-4o-mini"]

    assert server.kind is SpanKind.SERVER and client.kind is SpanKind.CLIENT
    assert server.parent is None and _child_of(client, server)
    assert server.start_time <= client.start_time <= client.end_time <= server.end_time
    s, c = dict(server.attributes or {}), dict(client.attributes or {})
    assert s["http.route"] == "/v1/chat/completions" and s["http.response.status_code"] == 200
    assert s["tenantgate.request.id"] == raw.headers["x-request-id"]
    assert s["tenantgate.tenant.id"] == key["tenant_id"] and s["tenantgate.key.id"] == key["id"]
    assert "error.type" not in s and server.status.status_code is StatusCode.UNSET

    assert completion.usage is not None
    assert c["gen_ai.operation.name"] == "chat" and c["gen_ai.provider.name"] == "openai"
    assert c["gen_ai.request.model"] == "gpt-4o-mini" and c["gen_ai.response.model"] == completion.model
    assert c["gen_ai.response.id"] == completion.id
    assert c["gen_ai.response.finish_reasons"] == ("stop",)
    assert c["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert c["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert c["gen_ai.request.max_tokens"] == 50 and c["gen_ai.request.temperature"] == 0.2
    assert c["openai.api.type"] == "chat_completions" and c["http.response.status_code"] == 200
    # No content and no credentials on spans by default.
    text = _all_attribute_text([server, client])
    assert "pelicans" not in text and key["key"] not in text and "sk-upstream" not in text
    assert "gen_ai.input.messages" not in c


def test_streamed_chat_spans_carry_stream_usage(traced_factory, dev_upstream) -> None:
    traced = traced_factory(upstream_base_url=dev_upstream)
    key = traced.gateway.new_key()["key"]
    traced.clear()
    chunks = list(
        traced.gateway.client(key).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    spans = traced.named("POST /v1/chat/completions", "chat gpt-4o-mini")
    server, client = spans["POST /v1/chat/completions"], spans["chat gpt-4o-mini"]
    assert _child_of(client, server)
    c = dict(client.attributes or {})
    assert usage is not None
    assert c["tenantgate.stream"] is True
    assert c["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert c["gen_ai.response.id"] == chunks[0].id and c["gen_ai.response.finish_reasons"] == ("stop",)
    assert 0 < c["tenantgate.time_to_first_token"] < (server.end_time - server.start_time) / 1e9


def test_unreachable_upstream_marks_every_attempt_and_the_server_span_as_errors(traced_factory) -> None:
    traced = traced_factory(upstream_base_url=f"http://127.0.0.1:{free_port()}/v1", upstream_max_retries=2)
    key = traced.gateway.new_key()["key"]
    traced.clear()
    with pytest.raises(openai.APIStatusError) as raised:
        traced.gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.status_code == 502
    server = traced.named("POST /v1/chat/completions")["POST /v1/chat/completions"]
    attempts = sorted(
        (s for s in traced.of_kind(SpanKind.CLIENT) if s.name == "chat gpt-4o-mini"), key=lambda s: s.start_time
    )
    assert len(attempts) == 3
    assert [(a.attributes or {}).get("http.request.resend_count") for a in attempts] == [None, 1, 2]
    for attempt in attempts:
        assert _child_of(attempt, server) and attempt.status.status_code is StatusCode.ERROR
        assert (attempt.attributes or {})["error.type"] == "ClientConnectorError"
    assert server.status.status_code is StatusCode.ERROR
    assert (server.attributes or {})["http.response.status_code"] == 502
    assert (server.attributes or {})["error.type"] == "ClientConnectorError"


def test_rate_limited_request_has_a_server_span_with_the_decision_and_no_client_span(
    traced_factory, recording_upstream: RecordingUpstream
) -> None:
    traced = traced_factory(upstream_base_url=recording_upstream.url)
    runtime = traced.gateway.runtime
    runtime.proxy.hooks = Hooks([runtime.telemetry.hook, RefuseWith429()])
    key = traced.gateway.new_key()["key"]
    traced.clear()
    with pytest.raises(openai.RateLimitError):
        traced.gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    server = traced.named("POST /v1/chat/completions")["POST /v1/chat/completions"]
    attributes = dict(server.attributes or {})
    assert server.name == "POST /v1/chat/completions" and attributes["http.response.status_code"] == 429
    assert attributes["tenantgate.limit.rejected"] is True and attributes["tenantgate.limit.kind"] == "requests"
    assert attributes["error.type"] == "rate_limit_exceeded"
    assert attributes["tenantgate.ratelimit.remaining_requests"] == 0
    assert server.status.status_code is StatusCode.UNSET  # a 4xx is the caller's problem, not a server error
    assert recording_upstream.app.seen == []  # nothing reached the upstream
    assert traced.of_kind(SpanKind.SERVER) == [server]
    assert not any("gen_ai.operation.name" in (s.attributes or {}) for s in traced.spans(1))


def test_caller_traceparent_is_continued_and_the_client_span_is_announced_upstream(
    traced_factory, recording_upstream: RecordingUpstream
) -> None:
    traced = traced_factory(upstream_base_url=recording_upstream.url)
    key = traced.gateway.new_key()["key"]
    traced.clear()
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traced.gateway.client(key).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={"traceparent": f"00-{caller_trace}-{caller_span}-01", "tracestate": "vendor=x"},
    )
    spans = traced.named("POST /v1/chat/completions", "chat gpt-4o-mini")
    server, client = spans["POST /v1/chat/completions"], spans["chat gpt-4o-mini"]
    assert server.parent is not None and server.parent.is_remote
    assert f"{server.parent.span_id:016x}" == caller_span
    assert server.context is not None and f"{server.context.trace_id:032x}" == caller_trace
    assert _child_of(client, server)
    (upstream_headers,) = recording_upstream.app.seen
    assert client.context is not None
    assert upstream_headers["traceparent"] == f"00-{caller_trace}-{client.context.span_id:016x}-01"
    assert upstream_headers["tracestate"] == "vendor=x"


def test_unsampled_request_makes_no_spans_and_passes_the_callers_context_on(
    traced_factory, recording_upstream: RecordingUpstream
) -> None:
    traced = traced_factory(upstream_base_url=recording_upstream.url)
    key = traced.gateway.new_key()["key"]
    traced.clear()
    not_sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    traced.gateway.client(key).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"traceparent": not_sampled}
    )
    response = httpx.get(traced.gateway.url + "/healthz", headers={"traceparent": not_sampled})
    assert response.status_code == 200
    assert traced.spans(1, timeout=0.5) == []
    assert recording_upstream.app.seen[0]["traceparent"] == not_sampled


def test_sampler_from_settings_can_switch_traces_off(traced_factory, recording_upstream: RecordingUpstream) -> None:
    traced = traced_factory(upstream_base_url=recording_upstream.url, otel_traces_sampler="always_off")
    key = traced.gateway.new_key()["key"]
    # Not traced.clear(): it waits (5 s) for the key request's span, which sampling off never makes. Were sampling
    # on, that span would still come, and fail the check below.
    traced.exporter.clear()
    traced.gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert traced.spans(1, timeout=0.5) == []
    assert "traceparent" not in recording_upstream.app.seen[0]


def test_prompt_and_completion_are_captured_only_when_opted_in(traced_factory, dev_upstream) -> None:
    traced = traced_factory(upstream_base_url=dev_upstream, trace_content=True)
    key = traced.gateway.new_key()["key"]
    client = traced.gateway.client(key)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    spans = traced.named("chat gpt-4o-mini")
    attributes = dict(spans["chat gpt-4o-mini"].attributes or {})
    assert json.loads(attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": MESSAGES[0]["content"]}]}
    ]
    assert json.loads(attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": completion.choices[0].message.content}],
            "finish_reason": "stop",
        }
    ]

    traced.clear(after="POST /v1/chat/completions")
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    attributes = dict(traced.named("chat gpt-4o-mini")["chat gpt-4o-mini"].attributes or {})
    (message,) = json.loads(attributes["gen_ai.output.messages"])
    assert message["parts"] == [{"type": "text", "content": streamed}] and message["finish_reason"] == "stop"


def test_fastapi_routes_are_named_by_template_and_unknown_paths_are_not(traced_factory, dev_upstream) -> None:
    traced = traced_factory(upstream_base_url=dev_upstream)
    tenant = traced.gateway.create_tenant("spans")
    traced.gateway.create_key(tenant["id"])
    httpx.get(traced.gateway.url + "/no/such/path/123")
    names = set(traced.named("POST /admin/tenants", "POST /admin/tenants/{tenant_id}/keys", "GET"))
    assert "POST /admin/tenants" in names and "POST /admin/tenants/{tenant_id}/keys" in names
    assert "GET" in names and not any("123" in name for name in names)


def test_database_and_redis_work_get_child_spans(traced_factory, postgres_url: str, redis_url: str) -> None:
    traced = traced_factory(database_url=postgres_url, redis_url=redis_url, upstream_base_url="http://127.0.0.1:9/v1")
    response = httpx.get(traced.gateway.url + "/readyz")
    assert response.status_code == 200
    traced.named("GET /readyz")
    spans = traced.spans(3)
    (server,) = traced.of_kind(SpanKind.SERVER)
    children = {s.name: s for s in spans if s is not server}
    # Readiness asks Redis for its role (a replica is not ready), in one round trip: one span.
    assert "ROLE" in children and any(name.startswith("SELECT ") for name in children)
    for child in children.values():
        assert child.kind is SpanKind.CLIENT and _child_of(child, server)
    assert (children["ROLE"].attributes or {})["db.system.name"] == "redis"
    select = next(s for name, s in children.items() if name.startswith("SELECT "))
    assert (select.attributes or {})["db.system.name"] == "postgresql"


@pytest.mark.parametrize(
    ("header", "valid"),
    [
        (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", True),
        (b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", True),  # later versions may add fields
        (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", False),
        (b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
        (b"00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
        (b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
        (b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),
        (b"garbage", False),
    ],
)
def test_traceparent_parsing_follows_w3c(header: bytes, valid: bool) -> None:
    parsed = parse_traceparent(header)
    assert (parsed is not None) is valid
    if parsed is not None:
        assert parsed.is_remote and parsed.trace_flags.sampled


def test_invalid_caller_traceparent_starts_a_new_trace(traced_factory, recording_upstream: RecordingUpstream) -> None:
    traced = traced_factory(upstream_base_url=recording_upstream.url)
    key = traced.gateway.new_key()["key"]
    traced.clear()
    traced.gateway.client(key).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"traceparent": "00-zz-bad-01"}
    )
    server = traced.named("POST /v1/chat/completions")["POST /v1/chat/completions"]
    assert server.parent is None and server.context is not None
    sent = recording_upstream.app.seen[0]["traceparent"]
    assert sent.startswith(f"00-{server.context.trace_id:032x}-")
