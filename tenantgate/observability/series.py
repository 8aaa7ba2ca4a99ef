"""A short history of this process's metrics, so the console can draw charts without Prometheus.

Nothing here runs on the request path: every few seconds a background task collects the registry (the same
cumulative instruments ``/metrics`` renders), keeps the *difference* from the previous collection as one frame,
and folds frames into coarser ones for the longer windows. A frame holds only the series that moved, so an idle
gateway costs nothing and a busy one at most (tracked series) x (frames kept).

Like the snapshots of ``exposition.py``, each worker writes its history to the shared ``TENANTGATE_METRICS_DIR``
(one file per worker) and whoever answers merges them: frames of the same instant add up (gauges combine as each
gauge declares), and an exited worker's past frames keep counting.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tenantgate.observability.metrics import MetricData

FRAME_SECONDS = 10
# (width of a frame in seconds, frames kept): 1 hour at 10 s, 24 hours at 5 min, 7 days at 1 h.
TIERS: tuple[tuple[int, int], ...] = ((FRAME_SECONDS, 360), (300, 288), (3600, 168))
_FILE_PREFIX = "series-"

# What the console charts; everything else the registry holds stays out of the history.
TRACKED = frozenset(
    {
        "tenantgate.proxy.requests",
        "gen_ai.server.request.duration",
        "gen_ai.server.time_to_first_token",
        "gen_ai.client.token.usage",
        "tenantgate.request.time",
        "tenantgate.upstream.attempts",
        "tenantgate.upstream.retries",
        "tenantgate.limit.rejections",
        "tenantgate.limits.admissions",
        "tenantgate.auth.failures",
        "tenantgate.metering.rejected_events",
        "tenantgate.metering.buffer.depth",
        "tenantgate.metering.spool.size",
        "tenantgate.metering.write.lag",
        "tenantgate.dependency.up",
        "http.server.active_requests",
    }
)

# A series' label values joined by this character (never part of a label: tenant ids, model names the gateway
# answered, upstream names and fixed words) make one JSON-friendly key.
SEP = "\x1f"
Moves = dict[str, dict[str, Any]]  # metric name -> label key -> number (counters, gauges) or bucket counts


@dataclass(slots=True)
class Frame:
    """What moved during ``[start, start + width)``: counter increments, histogram bucket increments (and the
    increment of the sum, last), gauge levels."""

    start: int
    moves: Moves = field(default_factory=dict)
    # Gauges' aggregation across workers (sum, max, min), carried so a reader can merge without the registry.
    gauges: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> list[Any]:
        return [self.start, self.moves, self.gauges]

    @classmethod
    def from_json(cls, data: list[Any]) -> Frame:
        return cls(int(data[0]), data[1], data[2])


def _key(labels: Iterable[Any]) -> str:
    return SEP.join(str(value) for value in labels)


def _cumulative(metrics: Iterable[MetricData]) -> tuple[Moves, dict[str, str]]:
    """The tracked metrics' current values by label key (histograms as bucket counts)."""
    values: Moves = {}
    gauges: dict[str, str] = {}
    for metric in metrics:
        spec = metric.spec
        if spec.name not in TRACKED:
            continue
        if spec.kind == "histogram":  # bucket counts, then the sum (tokens are a histogram's sum)
            values[spec.name] = {_key(p.labels): [*(p.counts or ()), p.sum] for p in metric.points}
        else:
            values[spec.name] = {_key(p.labels): p.value for p in metric.points}
            if spec.kind in ("gauge", "updowncounter"):
                gauges[spec.name] = spec.aggregation
    return values, gauges


def _difference(now: Moves, before: Moves, gauges: dict[str, str]) -> Moves:
    moves: Moves = {}
    for name, series in now.items():
        if name in gauges:
            moves[name] = dict(series)
            continue
        previous = before.get(name, {})
        changed: dict[str, Any] = {}
        for key, value in series.items():
            old = previous.get(key)
            if isinstance(value, list):
                delta = [a - b for a, b in zip(value, old, strict=True)] if old else value
                if any(delta):
                    changed[key] = delta
            elif value - (old or 0):
                changed[key] = value - (old or 0)
        if changed:
            moves[name] = changed
    return moves


def _fold(into: Moves, moves: Moves, gauges: dict[str, str], *, across_workers: bool) -> None:
    """Add ``moves`` to ``into``. Gauges: over time (one worker's frames into a coarser one) the highest level, or
    the lowest for ``min`` gauges (a dependency that was down at any moment); across workers at one instant, as the
    gauge declares (``sum`` of per-worker amounts)."""
    for name, series in moves.items():
        target = into.setdefault(name, {})
        aggregation = gauges.get(name)
        for key, value in series.items():
            old = target.get(key)
            if old is None:
                target[key] = list(value) if isinstance(value, list) else value
            elif isinstance(value, list):
                target[key] = [a + b for a, b in zip(old, value, strict=False)]
            elif aggregation is None or (aggregation == "sum" and across_workers):
                target[key] = old + value
            elif aggregation == "min":
                target[key] = min(old, value)
            else:
                target[key] = max(old, value)


class History:
    """One process's frames in every tier. ``sample`` is called every ``FRAME_SECONDS`` by the telemetry task."""

    def __init__(self, tiers: Sequence[tuple[int, int]] = TIERS) -> None:
        self.tiers = tuple(tiers)
        self.frames: list[deque[Frame]] = [deque(maxlen=keep) for _, keep in self.tiers]
        self._last: Moves | None = None

    def sample(self, metrics: Iterable[MetricData], now: float | None = None) -> None:
        """Close the frame that ends now: what moved since the previous sample. The first sample only sets the
        baseline (what happened before it has no known time)."""
        now = time.time() if now is None else now
        current, gauges = _cumulative(metrics)
        previous, self._last = self._last, current
        if previous is None:
            return
        width = self.tiers[0][0]
        start = int(now) // width * width - width
        frame = Frame(start, _difference(current, previous, gauges), gauges)
        for tier, (tier_width, _) in enumerate(self.tiers):
            frames = self.frames[tier]
            bucket = start // tier_width * tier_width
            if frames and frames[-1].start == bucket:
                _fold(frames[-1].moves, frame.moves, gauges, across_workers=False)
                frames[-1].gauges.update(gauges)
            elif not frames or frames[-1].start < bucket:
                frames.append(Frame(bucket, _copy(frame.moves), dict(gauges)))

    def as_json(self) -> bytes:
        return orjson.dumps({"tiers": [[f.as_json() for f in frames] for frames in self.frames]})


def _copy(moves: Moves) -> Moves:
    return {name: {k: list(v) if isinstance(v, list) else v for k, v in s.items()} for name, s in moves.items()}


@dataclass(slots=True)
class HistoryStore:
    """The shared directory's history files, one per worker (beside the metrics snapshots)."""

    directory: Path
    pid: int
    instance: str

    @property
    def path(self) -> Path:
        return self.directory / f"{_FILE_PREFIX}{self.pid}-{self.instance}.json"

    def write(self, history: History) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_bytes(history.as_json())
        os.replace(temporary, self.path)

    def read_others(self) -> list[list[list[Frame]]]:
        """Every other worker's tiers, past server runs' included (frames are dated, so a restart keeps the
        charts); a file nobody wrote for longer than the longest tier is deleted."""
        out = []
        oldest = time.time() - max(width * keep for width, keep in TIERS)
        for path in self.directory.glob(f"{_FILE_PREFIX}*.json"):
            if path.name == self.path.name:
                continue
            try:
                if path.stat().st_mtime < oldest:
                    path.unlink()
                    continue
                data = orjson.loads(path.read_bytes())
                out.append([[Frame.from_json(f) for f in frames] for frames in data["tiers"]])
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                continue  # vanished or half-written: skip it this time
        return out


def merged_tier(workers: Iterable[Sequence[Frame]]) -> dict[int, Frame]:
    """One tier of several workers' histories as frames by start time."""
    out: dict[int, Frame] = {}
    for frames in workers:
        for frame in frames:
            into = out.get(frame.start)
            if into is None:
                into = out[frame.start] = Frame(frame.start, {}, dict(frame.gauges))
            into.gauges.update(frame.gauges)
            _fold(into.moves, frame.moves, frame.gauges, across_workers=True)
    return out
