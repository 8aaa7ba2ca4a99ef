"""The telemetry exchange hook: GenAI and gateway metrics for every proxied request, upstream spans when sampled.

Registered first (see runtime.py), so its ``admit`` has announced the upstream span in ``traceparent`` before any
other hook may refuse the request, and its ``finish`` runs last, when every other hook has had its say.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from tenantgate.core.exchange import Exchange
from tenantgate.observability.context import CURRENT
from tenantgate.observability.metrics import (
    GENAI_DURATION_BUCKETS,
    GENAI_TOKEN_BUCKETS,
    GENAI_TTFT_BUCKETS,
    LabelCap,
    MetricRegistry,
)
from tenantgate.observability.tracing import Tracing, limit_kind
from tenantgate.settings import Settings

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
MODEL = "gen_ai.request.model"
TENANT = "tenantgate.tenant.id"
UPSTREAM = "tenantgate.upstream.name"
ERROR = "error.type"
STATUS_CLASS = "tenantgate.status.class"
# Gateway overhead is sub-millisecond when healthy, upstream time up to minutes for long streams.
PART_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
)  # fmt: skip
_GATEWAY, _UPSTREAM, _WAITING = ("gateway",), ("upstream",), ("waiting",)
# Operations that are not model invocations (listing models): no GenAI metrics for them.
_NOT_GENAI = frozenset({"models"})


class GatewayMetrics:
    def __init__(self, registry: MetricRegistry) -> None:
        self.request_duration = registry.histogram(
            "gen_ai.server.request.duration",
            unit="s",
            description="Time from receiving a GenAI request to sending its last byte",
            labels=(OPERATION, PROVIDER, MODEL, ERROR, TENANT),
            buckets=GENAI_DURATION_BUCKETS,
        )
        self.time_to_first_token = registry.histogram(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Time from receiving a streamed GenAI request to the first byte of its answer",
            labels=(OPERATION, PROVIDER, MODEL, TENANT),
            buckets=GENAI_TTFT_BUCKETS,
        )
        self.token_usage = registry.histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used per request, by token type (input, output)",
            labels=(OPERATION, PROVIDER, MODEL, "gen_ai.token.type", TENANT),
            buckets=GENAI_TOKEN_BUCKETS,
        )
        self.rejections = registry.counter(
            "tenantgate.limit.rejections",
            unit="{request}",
            description="Requests refused by a tenant limit before reaching the upstream, by limit kind",
            labels=("tenantgate.limit.kind", TENANT),
        )
        self.attempts = registry.counter(
            "tenantgate.upstream.attempts",
            unit="{attempt}",
            description="Requests sent to an upstream, by upstream and error type (empty when it answered < 400)",
            labels=(UPSTREAM, ERROR),
        )
        self.retries = registry.counter(
            "tenantgate.upstream.retries",
            unit="{attempt}",
            description="Upstream attempts after the first one of a request (retries and failover)",
            labels=(UPSTREAM,),
        )
        self.requests = registry.counter(
            "tenantgate.proxy.requests",
            unit="{request}",
            description="Proxied requests by tenant, model, upstream and status class (2xx, 4xx, 429 apart, 5xx)",
            labels=(TENANT, MODEL, UPSTREAM, STATUS_CLASS),
        )
        self.time = registry.histogram(
            "tenantgate.request.time",
            unit="s",
            description="Where a proxied request's time went: the gateway's own work, waiting on the upstream, or "
            "waiting by design (a work slot's queue, back-pressure before a refusal, backoff between attempts)",
            labels=("tenantgate.time.part",),
            buckets=PART_BUCKETS,
        )

    def know_upstream(self, name: str) -> None:
        """Start an upstream's counters at zero, so rates exist before its first error or retry."""
        self.attempts.add((name, ""), 0)
        self.retries.add((name,), 0)


def status_class(exchange: Exchange) -> str:
    """429s apart from other 4xx: a refusal by a limit is the gateway working, not a failure."""
    status = exchange.status
    if exchange.client_disconnected and status < 400:
        return "4xx"  # the client went away (nginx's 499)
    if status == 429:
        return "429"
    if status >= 500 or status == 0:
        return "5xx"
    return "4xx" if status >= 400 else "2xx"


class UpstreamLike(Protocol):
    name: str
    provider: str
    base_url: str


@dataclass(frozen=True, slots=True)
class UpstreamInfo:
    """What spans and metrics say about an upstream: ``gen_ai.provider.name`` and ``server.address``/``port``."""

    provider: str
    address: str
    port: int | None


class TelemetryHook:
    name = "telemetry"

    def __init__(self, settings: Settings, metrics: GatewayMetrics | None, tracing: Tracing | None) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.tenants = LabelCap(settings.metrics_tenant_label_limit)
        self.models = LabelCap(settings.metrics_model_label_limit)
        self.upstreams: dict[str, UpstreamInfo] = {}
        self.default = UpstreamInfo("openai", "", None)

    def know_upstreams(self, upstreams: Iterable[UpstreamLike]) -> None:
        for index, upstream in enumerate(upstreams):
            parts = urlsplit(upstream.base_url)
            info = UpstreamInfo(upstream.provider, parts.hostname or "", parts.port)
            self.upstreams[upstream.name] = info
            if index == 0:
                self.default = info
            if self.metrics is not None:
                self.metrics.know_upstream(upstream.name)

    async def admit(self, exchange: Exchange) -> None:
        state = CURRENT.get()
        if state is None:
            return
        state.exchange = exchange
        if state.sampled and self.tracing is not None:
            exchange.upstream_headers.extend(self.tracing.traceparent(state))
            exchange.capture_output = self.tracing.capture_content

    async def settle(self, exchange: Exchange) -> None:
        return None

    def finish(self, exchange: Exchange) -> None:
        if self.metrics is not None:
            self._record(self.metrics, exchange)
        state = CURRENT.get()
        if state is None:
            return
        state.exchange = exchange
        if state.sampled and self.tracing is not None and exchange.attempt_log:
            self.tracing.upstream_spans(state, exchange, self.upstreams, self.default)

    def _record(self, metrics: GatewayMetrics, exchange: Exchange) -> None:
        attempts = exchange.attempt_log
        for attempt in attempts:
            status = attempt.status
            error = attempt.error_type or (str(status) if status is not None and status >= 400 else "")
            metrics.attempts.add((attempt.upstream, error))
        if len(attempts) > 1:
            metrics.retries.add((attempts[-1].upstream,), len(attempts) - 1)
        tenant = self.tenants(exchange.ctx.principal.tenant_id)
        # Only answered requests may add a model name: a caller cannot fill the label set with made-up models.
        model = self.models(exchange.model, admit=exchange.status < 400)
        metrics.requests.add((tenant, model, exchange.upstream_name, status_class(exchange)))
        finished = exchange.finished_at
        if finished is not None:
            upstream = between = 0.0
            previous: float | None = None
            for attempt in attempts:
                ended = attempt.ended or finished
                upstream += ended - attempt.started
                if previous is not None:
                    between += max(0.0, attempt.started - previous)  # the retry backoff, mostly
                previous = ended
            waiting = exchange.waited + between
            metrics.time.record(_GATEWAY, max(0.0, finished - exchange.started - upstream - waiting))
            if attempts:
                metrics.time.record(_UPSTREAM, upstream)
            if waiting > 0:
                metrics.time.record(_WAITING, waiting)
        operation = exchange.operation
        if operation in _NOT_GENAI:
            return
        provider = self.upstreams.get(exchange.upstream_name, self.default).provider
        if finished is not None:
            metrics.request_duration.record(
                (operation, provider, model, exchange.error_type or "", tenant), finished - exchange.started
            )
        if exchange.stream and exchange.first_byte_at is not None:
            metrics.time_to_first_token.record(
                (operation, provider, model, tenant), exchange.first_byte_at - exchange.started
            )
        usage = exchange.usage
        if usage is not None:
            metrics.token_usage.record((operation, provider, model, "input", tenant), usage.input_tokens)
            if operation != "embeddings":
                metrics.token_usage.record((operation, provider, model, "output", tenant), usage.output_tokens)
        if exchange.status == 429 and not attempts:
            metrics.rejections.add((limit_kind(exchange), tenant))
