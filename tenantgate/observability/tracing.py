"""Traces: a SERVER span per HTTP request, a CLIENT span per upstream attempt (GenAI conventions), Redis/DB spans.

The sampling decision is taken once per request, with the configured OpenTelemetry sampler, when the request
arrives. An unsampled request then costs nothing more: no span objects, no attribute dicts. A sampled request's
spans are built once their outcome is known, from the timestamps the proxy records anyway (the exchange's
``attempt_log``), as finished ``ReadableSpan`` objects handed straight to the span processors (batching, export).
That is about a quarter of the cost of live SDK spans (measured: ~22 us for a server and a client span against
~85-100 us) and gives every span its exact start and end. The span ids are drawn up front, so the ``traceparent``
sent upstream names the client span the upstream's own spans will hang under.

No prompt or completion content and no secrets are put on spans unless ``TENANTGATE_TRACE_CONTENT`` is set.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from random import getrandbits
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from tenantgate.core.exchange import Exchange
from tenantgate.observability.content import input_messages, output_messages
from tenantgate.observability.context import RequestState

if TYPE_CHECKING:
    from tenantgate.observability.hook import UpstreamInfo
from tenantgate.settings import Settings

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NO_PARENT = Context()
_OK = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
# OpenAI's API family per GenAI operation (the ``openai.api.type`` attribute).
_API_TYPES = {"chat": "chat_completions", "responses": "responses", "embeddings": "embeddings"}
_REQUEST_PARAMETERS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("max_output_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("seed", "gen_ai.request.seed"),
    ("n", "gen_ai.request.choice.count"),
)


def build_sampler(settings: Settings) -> Sampler:
    name = settings.otel_traces_sampler
    root: Sampler
    if name.endswith("traceidratio"):
        root = TraceIdRatioBased(settings.otel_traces_sampler_arg)
    else:
        root = ALWAYS_OFF if name.endswith("always_off") else ALWAYS_ON
    return ParentBased(root) if name.startswith("parentbased_") else root


class Tracing:
    def __init__(self, settings: Settings, resource: Resource, scope: InstrumentationScope) -> None:
        self.sampler = build_sampler(settings)
        self.resource = resource
        self.scope = scope
        self.capture_content = settings.trace_content
        self.processors: list[SpanProcessor] = []

    def add_span_processor(self, processor: SpanProcessor) -> None:
        self.processors.append(processor)

    def shutdown(self) -> None:
        """Flush and stop the processors (blocking: call it from a thread)."""
        for processor in self.processors:
            processor.shutdown()

    # --- the request's server span ---------------------------------------------------------------------

    def begin(self, state: RequestState, method: str) -> None:
        traceparent = tracestate = None
        for name, value in state.scope["headers"]:
            if name == b"traceparent":
                traceparent = value
            elif name == b"tracestate":
                tracestate = value
        parent_context = _NO_PARENT
        if traceparent is not None:
            parent = parse_traceparent(traceparent)
            if parent is not None:
                state.parent = parent
                state.trace_id = parent.trace_id
                parent_context = set_span_in_context(NonRecordingSpan(parent))
        trace_id = state.trace_id or getrandbits(128)
        result = self.sampler.should_sample(parent_context, trace_id, method, SpanKind.SERVER)
        if result.decision is not Decision.RECORD_AND_SAMPLE:
            return
        trace_state = result.trace_state
        if tracestate is not None and state.parent is not None:
            trace_state = TraceState.from_header([tracestate.decode("latin-1")])
        state.sampled = True
        state.trace_id = trace_id
        state.span_id = getrandbits(64)
        state.trace_state = trace_state
        state.span_context = SpanContext(trace_id, state.span_id, False, _SAMPLED, trace_state)
        state.started_ns = time.time_ns()

    def end_server(self, state: RequestState, method: str, route: str, ended: float) -> None:
        scope = state.scope
        status = state.status
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "http.response.status_code": status,
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        if route:
            attributes["http.route"] = route
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
        for name, value in scope["headers"]:
            if name == b"user-agent":
                attributes["user_agent.original"] = value.decode("latin-1")
                break
        request_id = state.request_id
        if request_id:
            attributes["tenantgate.request.id"] = request_id
        ctx = state.context
        if ctx is not None:
            attributes["tenantgate.tenant.id"] = ctx.principal.tenant_id
            attributes["tenantgate.key.id"] = ctx.principal.key_id
        exchange = state.exchange
        error_type = exchange.error_type if exchange is not None else None
        if exchange is not None:
            _limit_attributes(attributes, exchange)
        if error_type is None and status >= 500:
            error_type = str(status)
        if error_type:
            attributes["error.type"] = error_type
        assert state.span_context is not None
        self.emit(
            ReadableSpan(
                f"{method} {route}" if route else method,
                context=state.span_context,
                parent=state.parent,
                resource=self.resource,
                attributes=attributes,
                kind=SpanKind.SERVER,
                instrumentation_scope=self.scope,
                status=_ERROR if status >= 500 or status == 0 else _OK,
                start_time=state.started_ns,
                end_time=state.to_ns(ended),
            )
        )

    # --- upstream attempts -----------------------------------------------------------------------------

    def traceparent(self, state: RequestState) -> list[tuple[str, str]]:
        """Headers announcing the first upstream attempt's span to the upstream (sampled requests only)."""
        state.client_span_id = getrandbits(64)
        headers = [("traceparent", f"00-{state.trace_id:032x}-{state.client_span_id:016x}-01")]
        if state.trace_state:
            headers.append(("tracestate", state.trace_state.to_header()))
        return headers

    def upstream_spans(
        self, state: RequestState, exchange: Exchange, upstreams: Mapping[str, UpstreamInfo], default: UpstreamInfo
    ) -> None:
        attempts = exchange.attempt_log
        name = f"{exchange.operation} {exchange.model}" if exchange.model else exchange.operation
        last = len(attempts) - 1
        for index, attempt in enumerate(attempts):
            upstream = upstreams.get(attempt.upstream, default)
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": exchange.operation,
                "gen_ai.provider.name": upstream.provider,
                "tenantgate.upstream.name": attempt.upstream,
                "server.address": upstream.address,
            }
            if upstream.port is not None:
                attributes["server.port"] = upstream.port
            api_type = _API_TYPES.get(exchange.operation)
            if api_type:
                attributes["openai.api.type"] = api_type
            if exchange.model:
                attributes["gen_ai.request.model"] = exchange.model
            if index:
                attributes["http.request.resend_count"] = index
            if attempt.status:
                attributes["http.response.status_code"] = attempt.status
            error_type = attempt.error_type or (
                str(attempt.status) if attempt.status and attempt.status >= 400 else None
            )
            if error_type:
                attributes["error.type"] = error_type
            if index == last:
                self._outcome_attributes(attributes, exchange)
            ended = attempt.ended if attempt.ended is not None else (exchange.finished_at or time.perf_counter())
            span_id = state.client_span_id if index == 0 and state.client_span_id else getrandbits(64)
            self.emit(
                ReadableSpan(
                    name,
                    context=SpanContext(state.trace_id, span_id, False, _SAMPLED, state.trace_state),
                    parent=state.span_context,
                    resource=self.resource,
                    attributes=attributes,
                    kind=SpanKind.CLIENT,
                    instrumentation_scope=self.scope,
                    status=_ERROR if error_type else _OK,
                    start_time=state.to_ns(attempt.started),
                    end_time=state.to_ns(ended),
                )
            )

    def _outcome_attributes(self, attributes: dict[str, Any], exchange: Exchange) -> None:
        attributes["tenantgate.stream"] = exchange.stream
        payload = exchange.payload
        if payload:
            for field, attribute in _REQUEST_PARAMETERS:
                value = payload.get(field)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    attributes[attribute] = value
            if self.capture_content and exchange.operation != "embeddings":
                messages = input_messages(payload)
                if messages is not None:
                    attributes["gen_ai.input.messages"] = messages
        if self.capture_content and exchange.output is not None:
            output = output_messages(exchange.output, exchange.finish_reasons)
            if output is not None:
                attributes["gen_ai.output.messages"] = output
        if exchange.response_model:
            attributes["gen_ai.response.model"] = exchange.response_model
        if exchange.response_id:
            attributes["gen_ai.response.id"] = exchange.response_id
        if exchange.finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = tuple(exchange.finish_reasons)
        usage = exchange.usage
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
            if usage.cached_input_tokens:
                attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_input_tokens
            if usage.reasoning_tokens:
                attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
            if exchange.usage_source == "estimated":
                attributes["tenantgate.usage.estimated"] = True
        if exchange.time_to_first_token is not None and exchange.stream:
            attributes["tenantgate.time_to_first_token"] = exchange.time_to_first_token
        if exchange.client_disconnected:
            attributes["tenantgate.client_disconnected"] = True

    # --- other work done for a sampled request (Redis, database) ----------------------------------------

    def child_span(
        self,
        state: RequestState,
        name: str,
        attributes: Mapping[str, Any],
        started: float,
        ended: float,
        error_type: str | None = None,
        kind: SpanKind = SpanKind.CLIENT,
    ) -> None:
        if error_type:
            attributes = {**attributes, "error.type": error_type}
        self.emit(
            ReadableSpan(
                name,
                context=SpanContext(state.trace_id, getrandbits(64), False, _SAMPLED, state.trace_state),
                parent=state.span_context,
                resource=self.resource,
                attributes=attributes,
                kind=kind,
                instrumentation_scope=self.scope,
                status=_ERROR if error_type else _OK,
                start_time=state.to_ns(started),
                end_time=state.to_ns(ended),
            )
        )

    def emit(self, span: ReadableSpan) -> None:
        for processor in self.processors:
            processor.on_end(span)


_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?")


def parse_traceparent(value: bytes) -> SpanContext | None:
    """A caller's W3C ``traceparent`` (trace-context level 1 rules), or None when it is not valid."""
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace, span, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, True, TraceFlags(int(flags, 16) & TraceFlags.SAMPLED))


_RATELIMIT_ATTRIBUTES: dict[bytes, str] = {}
"""x-ratelimit-* header name -> span attribute name (a handful of names; computed once each)."""


def _limit_attributes(attributes: dict[str, Any], exchange: Exchange) -> None:
    """What the rate limiter decided, as far as the exchange shows it (response headers, the refusal)."""
    names = _RATELIMIT_ATTRIBUTES
    for name, value in exchange.response_headers:
        key = names.get(name)
        if key is None:
            if not name.startswith(b"x-ratelimit-") or len(names) > 64:
                continue
            key = names[name] = "tenantgate.ratelimit." + name[len(b"x-ratelimit-") :].decode("latin-1").replace(
                "-", "_"
            )
        attributes[key] = int(value) if value.isdigit() else value.decode("latin-1")
    if exchange.status == 429 and not exchange.reached_upstream:
        attributes["tenantgate.limit.rejected"] = True
        attributes["tenantgate.limit.kind"] = limit_kind(exchange)


def limit_kind(exchange: Exchange) -> str:
    """Which limit refused the request: the limiter's own note if it left one, else the error code."""
    kind = exchange.refused_by
    return kind if isinstance(kind, str) and kind else (exchange.error_type or "unknown")
