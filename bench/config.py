"""What the benchmark runs: the contenders, and the one place that says how tenantgate is configured.

Every tenantgate variant runs as production does: ``tenantgate serve --workers 1``, PostgreSQL (a fresh database per
run), Redis, one tenant with one key whose RPM/TPM are set high enough never to reject, so the limiter does its work
on every request without refusing any. Features that are switched on by settings are switched on in
``FEATURE_ENV`` below: when a capability lands on main, enabling it in the benchmark is a one-line change here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Limits of the benchmark tenant: far above what one worker can serve (about 1e5 requests a minute), so nothing is
# refused, but set, so the limiter checks and charges every request. Both fit a 32-bit integer column.
TENANT_RPM = 1_000_000_000
TENANT_TPM = 2_000_000_000

# Settings that switch tenantgate's features on, shared by every variant. Unknown TENANTGATE_* variables are ignored
# by tenantgate, so a setting may be listed here before the build under test knows it.
FEATURE_ENV: dict[str, str] = {
    # Limits (issue 4): enforced in Redis; the harness sets TENANTGATE_REDIS_URL and the tenant's RPM/TPM above.
    # Metering (issue 5): always on (local spool + batched Postgres writes); the harness checks events afterwards.
    "TENANTGATE_TRACING_ENABLED": "true",
    # OpenTelemetry (issue 7), through the standard SDK variables. The harness points the OTLP endpoint at its own
    # receiver (bench/otlp_sink.py), so exports do all their SDK work without a network dependency.
    "OTEL_SERVICE_NAME": "tenantgate-bench",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_METRIC_EXPORT_INTERVAL": "5000",
}


@dataclass(frozen=True)
class GatewayVariant:
    name: str
    label: str
    env: dict[str, str] = field(default_factory=dict)
    embedded: bool = False
    """The embedded default instead of PostgreSQL and Redis: its own SQLite file (migrated by the harness as the
    Postgres database is), limits in memory."""


# The bars: >= 80% of the passthrough with 10% of traces sampled, >= 50% with every request traced.
GATEWAY_VARIANTS = (
    GatewayVariant("tenantgate", "tenantgate, 10% traced", {"OTEL_TRACES_SAMPLER_ARG": "0.1"}),
    GatewayVariant("tenantgate-traced", "tenantgate, 100% traced", {"OTEL_TRACES_SAMPLER_ARG": "1.0"}),
)
DIRECT = "direct"
PASSTHROUGH = "passthrough"
CONTENDERS = (DIRECT, PASSTHROUGH, *(v.name for v in GATEWAY_VARIANTS))
LABELS = {DIRECT: "direct upstream", PASSTHROUGH: "naive passthrough", **{v.name: v.label for v in GATEWAY_VARIANTS}}
# The variant the >= 80% and latency targets are judged on.
PRIMARY = GATEWAY_VARIANTS[0].name
FULLY_TRACED = GATEWAY_VARIANTS[1].name

MODES = ("json", "stream")
CONNECTIONS = (1, 32)


@dataclass(frozen=True)
class Timing:
    seconds: int
    warmup_seconds: int
    rounds: int
    startup_warmup_seconds: int = 4
    """Once per contender before the first case, non-streamed then streamed: one-time work after a start (the
    tokenizer loading in the background, first-use imports and caches) is not what the cases measure."""


FULL = Timing(seconds=5, warmup_seconds=1, rounds=2)
QUICK = Timing(seconds=1, warmup_seconds=1, rounds=1, startup_warmup_seconds=1)
