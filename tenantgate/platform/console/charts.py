"""The console's SRE charts: the workers' merged history (observability/series.py) as arrays a chart draws.

Rates are per second over each frame; percentiles are read from the frame's histogram buckets the way Prometheus'
``histogram_quantile`` reads them. A frame no worker recorded (the gateway was not running) is ``None``, never 0,
so a chart shows a gap rather than a calm that did not happen.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tenantgate.observability.hook import PART_BUCKETS
from tenantgate.observability.metrics import GENAI_DURATION_BUCKETS, GENAI_TTFT_BUCKETS
from tenantgate.observability.series import SEP, TIERS, Frame, merged_tier

# window -> (tier, frames shown)
WINDOWS = {"15m": (0, 90), "1h": (0, 360), "24h": (1, 288), "7d": (2, 168)}
STATUS_CLASSES = ("2xx", "4xx", "429", "5xx")
# A 429 is either the gateway's own limit refusing (counted again in REJECTIONS, the request never left) or an
# upstream's 429 passed on after the retries: the first is the gateway doing its job, the second is capacity
# missing upstream. "429" stays the sum; the two parts are apart wherever REJECTIONS can be narrowed alike.
LIMITS_429, UPSTREAM_429 = "429_limits", "429_upstream"
RATE_LIMITED = frozenset({"rate_limit_exceeded", "insufficient_quota"})

REQUESTS = "tenantgate.proxy.requests"
DURATION = "gen_ai.server.request.duration"
TTFT = "gen_ai.server.time_to_first_token"
TOKENS = "gen_ai.client.token.usage"
PARTS = "tenantgate.request.time"
ATTEMPTS = "tenantgate.upstream.attempts"
RETRIES = "tenantgate.upstream.retries"
REJECTIONS = "tenantgate.limit.rejections"
ADMISSIONS = "tenantgate.limits.admissions"

# Where each drill-down dimension sits in a metric's labels (a metric without it cannot be narrowed by it).
_POSITIONS: dict[str, dict[str, int]] = {
    REQUESTS: {"tenant": 0, "model": 1, "upstream": 2},
    DURATION: {"model": 2, "tenant": 4},
    TTFT: {"model": 2, "tenant": 3},
    TOKENS: {"model": 2, "tenant": 4},
    ATTEMPTS: {"upstream": 0},
    RETRIES: {"upstream": 0},
    REJECTIONS: {"tenant": 1},
}


@dataclass(frozen=True, slots=True)
class Filters:
    tenant: str | None = None
    model: str | None = None
    upstream: str | None = None

    def given(self) -> dict[str, str]:
        return {name: value for name in ("tenant", "model", "upstream") if (value := getattr(self, name)) is not None}

    def applies(self, metric: str) -> bool:
        """Whether the metric can be narrowed to every given filter (otherwise it is left out, not shown whole)."""
        return all(name in _POSITIONS.get(metric, {}) for name in self.given())

    def matches(self, metric: str, labels: Sequence[str]) -> bool:
        positions = _POSITIONS.get(metric, {})
        return all(labels[positions[name]] == value for name, value in self.given().items())


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


def _series(frame: Frame, metric: str, filters: Filters) -> Iterable[tuple[list[str], Any]]:
    if not filters.applies(metric):
        return
    for key, value in frame.moves.get(metric, {}).items():
        labels = key.split(SEP)
        if filters.matches(metric, labels):
            yield labels, value


def _histogram(frame: Frame, metric: str, filters: Filters, size: int, where: Any = None) -> list[float]:
    """Bucket counts summed over matching series, and their sum last."""
    total = [0.0] * (size + 2)
    for labels, value in _series(frame, metric, filters):
        if where is None or where(labels):
            for index, count in enumerate(value[: size + 2]):
                total[index] += count
    return total


class _Timeline:
    def __init__(self, frames: dict[int, Frame], width: int, count: int, now: float) -> None:
        last = int(now) // width * width
        if width == TIERS[0][0]:
            last -= width  # the current 10 s frame is not closed yet
        self.starts = [last - width * index for index in range(count - 1, -1, -1)]
        self.frames = [frames.get(start) for start in self.starts]
        self.width = width

    def each(self, compute: Any) -> list[Any]:
        return [None if frame is None else compute(frame) for frame in self.frames]


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def chart_data(histories: Iterable[Sequence[Sequence[Frame]]], window: str, filters: Filters) -> dict[str, Any]:
    tier, count = WINDOWS[window]
    width = TIERS[tier][0]
    timeline = _Timeline(merged_tier(h[tier] for h in histories if len(h) > tier), width, count, time.time())
    rate = 1 / width
    d_size, t_size, p_size = len(GENAI_DURATION_BUCKETS), len(GENAI_TTFT_BUCKETS), len(PART_BUCKETS)

    def by_class(frame: Frame) -> dict[str, float]:
        counts = dict.fromkeys(STATUS_CLASSES, 0.0)
        for labels, value in _series(frame, REQUESTS, filters):
            counts[labels[3]] = counts.get(labels[3], 0.0) + value
        return counts

    classes = timeline.each(by_class)
    if filters.applies(REJECTIONS):
        for counts, frame in zip(classes, timeline.frames, strict=True):
            if counts is not None and frame is not None:
                counts.update(_split_429(counts["429"], _total(frame, REJECTIONS, filters)))
    names = (*STATUS_CLASSES, LIMITS_429, UPSTREAM_429) if filters.applies(REJECTIONS) else STATUS_CLASSES
    out: dict[str, Any] = {
        "window": window,
        "step_seconds": width,
        "t": timeline.starts,
        "filters": filters.given(),
        "requests_per_second": {
            name: [None if c is None else _rounded(c[name] * rate) for c in classes] for name in names
        },
    }

    def percentiles(metric: str, bounds: Sequence[float], size: int, where: Any = None) -> dict[str, list[Any]]:
        hists = timeline.each(lambda f: _histogram(f, metric, filters, size, where))
        return {
            f"p{q}": [None if h is None else _rounded(quantile(bounds, h[: size + 1], q / 100)) for h in hists]
            for q in (50, 95, 99)
        }

    if filters.applies(DURATION):
        # Latency of answered requests: a limit's refusal in 1 ms would make the gateway look fast.
        out["latency_seconds"] = percentiles(
            DURATION, GENAI_DURATION_BUCKETS, d_size, lambda labels: labels[3] not in RATE_LIMITED
        )
        out["ttft_seconds"] = percentiles(TTFT, GENAI_TTFT_BUCKETS, t_size)
        tokens = {
            kind: timeline.each(
                lambda f, kind=kind: _rounded(
                    _histogram(f, TOKENS, filters, 14, lambda labels, kind=kind: labels[3] == kind)[-1] * rate, 3
                )
            )
            for kind in ("input", "output")
        }
        out["tokens_per_second"] = tokens
    if not filters.given():
        out["time_seconds"] = {
            part: percentiles(PARTS, PART_BUCKETS, p_size, lambda labels, part=part: labels[0] == part)
            # "waiting" is recorded only for requests that waited (a work slot's queue, pacing before a refusal,
            # backoff between attempts): its percentiles are of those requests, apart from the gateway's work.
            for part in ("gateway", "upstream", "waiting")
        }
        out["limiter"] = {
            "admissions_per_second": _by_label(timeline, ADMISSIONS, filters, 0, rate),
            "dependency_up": _gauge_by_label(timeline, "tenantgate.dependency.up"),
        }
        out["metering"] = {
            "write_lag_seconds": timeline.each(lambda f: _gauge(f, "tenantgate.metering.write.lag")),
            "spool_bytes": timeline.each(lambda f: _gauge(f, "tenantgate.metering.spool.size")),
            "buffered_events": timeline.each(lambda f: _gauge(f, "tenantgate.metering.buffer.depth")),
            "rejected_events": timeline.each(lambda f: _total(f, "tenantgate.metering.rejected_events", filters)),
        }
        out["in_flight"] = timeline.each(lambda f: _gauge(f, "http.server.active_requests"))
    if filters.applies(ATTEMPTS):
        out["upstream"] = {
            "errors_per_second": timeline.each(
                lambda f: _rounded(sum(v for labels, v in _series(f, ATTEMPTS, filters) if labels[1]) * rate)
            ),
            "retries_per_second": timeline.each(lambda f: _rounded(_total(f, RETRIES, filters) * rate)),
        }
    if filters.applies(REJECTIONS):
        out["rejections_per_second"] = _by_label(timeline, REJECTIONS, filters, 0, rate)
    out["totals"] = _totals(timeline, filters)
    return out


def _split_429(answered: float, refused: float) -> dict[str, float]:
    """429s answered, as the gateway's refusals and upstreams' 429s (frames of several workers can disagree by a
    request at their edges, so neither part goes below zero or above the whole)."""
    limits = min(answered, refused)
    return {LIMITS_429: limits, UPSTREAM_429: answered - limits}


def _total(frame: Frame, metric: str, filters: Filters) -> float:
    return float(sum(value for _, value in _series(frame, metric, filters)))


def _gauge(frame: Frame, metric: str) -> float | None:
    values = frame.moves.get(metric)
    return None if not values else float(sum(values.values()))


def _gauge_by_label(timeline: _Timeline, metric: str) -> dict[str, list[Any]]:
    names = sorted({key for frame in timeline.frames if frame is not None for key in frame.moves.get(metric, {})})
    return {name: timeline.each(lambda f, name=name: f.moves.get(metric, {}).get(name)) for name in names}


def _by_label(timeline: _Timeline, metric: str, filters: Filters, position: int, rate: float) -> dict[str, Any]:
    names: set[str] = set()
    for frame in timeline.frames:
        if frame is not None:
            names.update(labels[position] for labels, _ in _series(frame, metric, filters))
    return {
        name: timeline.each(
            lambda f, name=name: _rounded(
                sum(v for labels, v in _series(f, metric, filters) if labels[position] == name) * rate
            )
        )
        for name in sorted(names)
    }


def _totals(timeline: _Timeline, filters: Filters) -> dict[str, Any]:
    """Whole-window numbers for the cards and the drill-down tables (tenants, models, upstreams)."""
    classes = dict.fromkeys(STATUS_CLASSES, 0.0)
    rows: dict[str, dict[str, dict[str, Any]]] = {"tenant": {}, "model": {}, "upstream": {}}
    latency: dict[tuple[str, str], list[float]] = {}
    size = len(GENAI_DURATION_BUCKETS)
    upstream_errors = 0.0
    refused = 0.0
    refused_by_tenant: dict[str, float] = {}
    for frame in timeline.frames:
        if frame is None:
            continue
        for labels, value in _series(frame, REQUESTS, filters):
            classes[labels[3]] = classes.get(labels[3], 0.0) + value
            for dimension, position in (("tenant", 0), ("model", 1), ("upstream", 2)):
                row = rows[dimension].setdefault(labels[position], {**dict.fromkeys(STATUS_CLASSES, 0)})
                row[labels[3]] = row.get(labels[3], 0) + int(value)
        for labels, value in _series(frame, DURATION, filters):
            if labels[3] in RATE_LIMITED:
                continue
            for dimension, position in (("tenant", 4), ("model", 2)):
                into = latency.setdefault((dimension, labels[position]), [0.0] * (size + 2))
                for index, count in enumerate(value[: size + 2]):
                    into[index] += count
        for labels, value in _series(frame, REJECTIONS, filters):
            refused += value
            refused_by_tenant[labels[1]] = refused_by_tenant.get(labels[1], 0.0) + value
        for labels, value in _series(frame, ATTEMPTS, filters):
            if labels[1]:
                upstream_errors += value
                row = rows["upstream"].setdefault(labels[0], {**dict.fromkeys(STATUS_CLASSES, 0)})
                row["upstream_errors"] = row.get("upstream_errors", 0) + int(value)
    for (dimension, name), counts in latency.items():
        found = rows[dimension].get(name)
        if found is not None:
            found["p95_seconds"] = _rounded(quantile(GENAI_DURATION_BUCKETS, counts[: size + 1], 0.95))
    split = filters.applies(REJECTIONS)
    if split:
        for tenant, row in rows["tenant"].items():
            row.update({k: int(v) for k, v in _split_429(row["429"], refused_by_tenant.get(tenant, 0.0)).items()})
    parts = _split_429(classes["429"], refused) if split else {LIMITS_429: None, UPSTREAM_429: None}
    requests = sum(classes.values())
    return {
        "requests": int(requests),
        **{name: int(value) for name, value in classes.items()},
        # None where the filter cannot narrow the limiter's refusals (a model or upstream): the 429s are not split.
        **{name: None if value is None else int(value) for name, value in parts.items()},
        "upstream_errors": int(upstream_errors),
        # Errors are what the gateway or its upstreams failed at: 5xx. The gateway's refusals are limits doing
        # their job; an upstream's 429s are counted apart (above), never as the gateway's limits. The ratio is
        # of every 429 answered, whoever refused.
        "error_ratio": None if not requests else round(classes["5xx"] / requests, 6),
        "rate_limited_ratio": None if not requests else round(classes["429"] / requests, 6),
        "tenants": _rows(rows["tenant"], "tenant"),
        "models": _rows(rows["model"], "model"),
        "upstreams": _rows(rows["upstream"], "upstream"),
    }


def _rows(rows: dict[str, dict[str, Any]], name: str) -> list[dict[str, Any]]:
    out = [
        {name: value, "requests": sum(int(row.get(c, 0)) for c in STATUS_CLASSES), **row}
        for value, row in rows.items()
        if value
    ]
    return sorted(out, key=lambda row: (-row["requests"], row[name]))
