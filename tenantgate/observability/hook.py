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

    def know_upstream(self, name: str) -> None:
        """Start an upstream's counters at zero, so rates exist before its first error or retry."""
        self.attempts.add((name, ""), 0)
        self.retries.add((name,), 0)


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
        operation = exchange.operation
        if operation in _NOT_GENAI:
            return
        tenant = self.tenants(exchange.ctx.principal.tenant_id)
        provider = self.upstreams.get(exchange.upstream_name, self.default).provider
        # Only answered requests may add a model name: a caller cannot fill the label set with made-up models.
        model = self.models(exchange.model, admit=exchange.status < 400)
        if exchange.finished_at is not None:
            metrics.request_duration.record(
                (operation, provider, model, exchange.error_type or "", tenant), exchange.finished_at - exchange.started
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
