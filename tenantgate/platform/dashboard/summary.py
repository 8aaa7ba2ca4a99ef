"""The built-in dashboard's numbers: the merged metrics of all workers, folded into per-tenant/model/route rows.

Counts and token totals are cumulative since the workers started; the page turns two consecutive summaries into
rates and into latency percentiles of the last interval (hence the raw ``latency_buckets``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from tenantgate.observability.exposition import WorkerSnapshot
from tenantgate.observability.metrics import GENAI_DURATION_BUCKETS, GENAI_TTFT_BUCKETS, MetricData, Point

REQUEST_DURATION = "gen_ai.server.request.duration"
TTFT = "gen_ai.server.time_to_first_token"
TOKENS = "gen_ai.client.token.usage"
HTTP_DURATION = "http.server.request.duration"
RATE_LIMITED = frozenset({"rate_limit_exceeded", "insufficient_quota"})


def quantile(bounds: Sequence[float], counts: Sequence[float], q: float) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding the q-th observation."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    cumulative = 0.0
    for index, count in enumerate(counts):
        if cumulative + count >= rank and count > 0:
            if index >= len(bounds):
                return bounds[-1] if bounds else None  # in the +Inf bucket: the highest finite bound
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * (rank - cumulative) / count
        cumulative += count
    return None


def _by_name(metrics: Iterable[MetricData]) -> dict[str, MetricData]:
    return {metric.spec.name: metric for metric in metrics}


def _labels(metric: MetricData, point: Point) -> dict[str, str]:
    return {name: str(value) for name, value in zip(metric.spec.labels, point.labels, strict=False)}


def _add(into: list[float], counts: Sequence[int] | None) -> None:
    for index, count in enumerate(counts or ()):
        into[index] += count


class _Row:
    __slots__ = ("buckets", "errors", "input_tokens", "output_tokens", "rate_limited", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.rate_limited = 0
        self.input_tokens = 0.0
        self.output_tokens = 0.0
        self.buckets = [0.0] * (len(GENAI_DURATION_BUCKETS) + 1)

    def as_dict(self, key: str, value: str) -> dict[str, Any]:
        return {
            key: value,
            "requests": self.requests,
            "errors": self.errors,
            "rate_limited": self.rate_limited,
            "input_tokens": int(self.input_tokens),
            "output_tokens": int(self.output_tokens),
            "p50_seconds": quantile(GENAI_DURATION_BUCKETS, self.buckets, 0.5),
            "p95_seconds": quantile(GENAI_DURATION_BUCKETS, self.buckets, 0.95),
        }


def build_summary(merged: list[MetricData], snapshots: Sequence[WorkerSnapshot]) -> dict[str, Any]:
    metrics = _by_name(merged)
    tenants: dict[str, _Row] = defaultdict(_Row)
    models: dict[str, _Row] = defaultdict(_Row)
    overall = _Row()
    ttft = [0.0] * (len(GENAI_TTFT_BUCKETS) + 1)

    if REQUEST_DURATION in metrics:
        metric = metrics[REQUEST_DURATION]
        for point in metric.points:
            labels = _labels(metric, point)
            error = labels.get("error.type", "")
            for row in (overall, tenants[labels["tenantgate.tenant.id"]], models[labels["gen_ai.request.model"]]):
                row.requests += point.count
                row.errors += point.count if error else 0
                row.rate_limited += point.count if error in RATE_LIMITED else 0
                _add(row.buckets, point.counts)
    if TOKENS in metrics:
        metric = metrics[TOKENS]
        for point in metric.points:
            labels = _labels(metric, point)
            field = "input_tokens" if labels.get("gen_ai.token.type") == "input" else "output_tokens"
            for row in (overall, tenants[labels["tenantgate.tenant.id"]], models[labels["gen_ai.request.model"]]):
                setattr(row, field, getattr(row, field) + point.sum)
    if TTFT in metrics:
        for point in metrics[TTFT].points:
            _add(ttft, point.counts)

    return {
        "generated_at": time.time(),
        "totals": {
            **{k: v for k, v in overall.as_dict("scope", "all").items() if k != "scope"},
            "server_errors": _http_server_errors(metrics.get(HTTP_DURATION)),
            "in_flight": _gauge(metrics, "http.server.active_requests"),
            "workers": _gauge(metrics, "tenantgate.workers"),
        },
        "latency_seconds": _percentiles(GENAI_DURATION_BUCKETS, overall.buckets),
        "latency_buckets": {"bounds": list(GENAI_DURATION_BUCKETS), "counts": overall.buckets},
        "ttft_seconds": _percentiles(GENAI_TTFT_BUCKETS, ttft),
        "tenants": sorted((r.as_dict("tenant", k) for k, r in tenants.items()), key=lambda r: -r["requests"]),
        "models": sorted((r.as_dict("model", k) for k, r in models.items()), key=lambda r: -r["requests"]),
        "routes": _routes(metrics.get(HTTP_DURATION)),
        "upstreams": _upstreams(metrics),
        "rejections": _rows(metrics.get("tenantgate.limit.rejections"), ("kind", "tenant")),
        "dependencies": {
            row["name"]: row["value"] for row in _rows(metrics.get("tenantgate.dependency.up"), ("name",))
        },
        "key_cache": {
            row["result"]: row["value"] for row in _rows(metrics.get("tenantgate.key_cache.lookups"), ("result",))
        },
        "workers": [_worker(snapshot) for snapshot in snapshots],
    }


def _percentiles(bounds: Sequence[float], counts: Sequence[float]) -> dict[str, float | None]:
    return {f"p{int(q * 100)}": quantile(bounds, counts, q) for q in (0.5, 0.95, 0.99)}


def _gauge(metrics: dict[str, MetricData], name: str) -> float:
    metric = metrics.get(name)
    return sum(point.value for point in metric.points) if metric is not None else 0.0


def _http_server_errors(metric: MetricData | None) -> int:
    if metric is None:
        return 0
    status = metric.spec.labels.index("http.response.status_code")
    return sum(p.count for p in metric.points if str(p.labels[status]).isdigit() and int(p.labels[status]) >= 500)


def _routes(metric: MetricData | None) -> list[dict[str, Any]]:
    if metric is None:
        return []
    rows = []
    for point in metric.points:
        labels = _labels(metric, point)
        rows.append(
            {
                "method": labels["http.request.method"],
                "route": labels["http.route"] or "(unmatched)",
                "status": labels["http.response.status_code"],
                "requests": point.count,
                "p95_seconds": _route_p95(metric, point),
            }
        )
    return sorted(rows, key=lambda r: (-r["requests"], r["route"]))


def _route_p95(metric: MetricData, point: Point) -> float | None:
    return quantile(metric.spec.buckets, point.counts or (), 0.95)


def _rows(metric: MetricData | None, names: tuple[str, ...]) -> list[dict[str, Any]]:
    if metric is None:
        return []
    return [
        {**dict(zip(names, (str(v) for v in point.labels), strict=False)), "value": point.value}
        for point in metric.points
    ]


def _upstreams(metrics: dict[str, MetricData]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"attempts": 0, "errors": 0, "retries": 0})
    for row in _rows(metrics.get("tenantgate.upstream.attempts"), ("upstream", "error")):
        rows[row["upstream"]]["attempts"] += int(row["value"])
        rows[row["upstream"]]["errors"] += int(row["value"]) if row["error"] else 0
    for row in _rows(metrics.get("tenantgate.upstream.retries"), ("upstream",)):
        rows[row["upstream"]]["retries"] += int(row["value"])
    return [{"upstream": name, **values} for name, values in sorted(rows.items())]


def _worker(snapshot: WorkerSnapshot) -> dict[str, Any]:
    requests = 0
    for metric in snapshot.metrics:
        if metric.spec.name == HTTP_DURATION:
            requests = sum(point.count for point in metric.points)
    age = max(0.0, round(time.time() - snapshot.written_at, 3))
    return {"pid": snapshot.pid, "requests": requests, "exited": snapshot.final, "snapshot_age_seconds": age}
