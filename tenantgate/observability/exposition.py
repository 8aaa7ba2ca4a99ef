"""Prometheus ``/metrics`` that stays correct with several worker processes.

``tenantgate serve --workers N`` runs N processes behind one port, so a scrape reaches one of them at random. Each
worker therefore writes a snapshot of its metrics to a shared directory (``TENANTGATE_METRICS_DIR``, which
``serve`` creates when it starts several workers) every few seconds, and the worker answering a scrape first
writes its own snapshot, then merges every worker's snapshot:

- counters and histograms add up over *all* snapshots, including those of workers that have exited, so totals
  never go backwards when a worker is restarted (the same choice prometheus_client's multiprocess mode makes);
- gauges (in-flight requests, buffer depths, health) combine only over live workers, by ``sum``, ``max`` or
  ``min`` as each gauge declares.

Because the answering worker writes its own file before reading, and every file only ever grows, two scrapes in
a row never see a counter decrease, whichever worker answers. Other workers' numbers are at most one snapshot
interval old.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tenantgate.observability.metrics import Labels, MetricData, MetricSpec, Point

SNAPSHOT_INTERVAL_SECONDS = 5.0
_FILE_PREFIX = "metrics-"
WORKERS_SPEC = MetricSpec(
    "tenantgate.workers", "gauge", "{worker}", "Worker processes whose metrics this endpoint merges"
)


@dataclass(slots=True)
class WorkerSnapshot:
    pid: int
    instance: str
    written_at: float
    metrics: list[MetricData]
    final: bool = False

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "pid": self.pid,
                "instance": self.instance,
                "written_at": self.written_at,
                "final": self.final,
                "metrics": [_metric_to_dict(m) for m in self.metrics],
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> WorkerSnapshot:
        data = orjson.loads(raw)
        return cls(
            pid=int(data["pid"]),
            instance=str(data["instance"]),
            written_at=float(data["written_at"]),
            final=bool(data.get("final", False)),
            metrics=[_metric_from_dict(m) for m in data["metrics"]],
        )


def _metric_to_dict(metric: MetricData) -> dict[str, Any]:
    spec = metric.spec
    return {
        "name": spec.name,
        "kind": spec.kind,
        "unit": spec.unit,
        "description": spec.description,
        "labels": spec.labels,
        "buckets": spec.buckets,
        "aggregation": spec.aggregation,
        "points": [
            [[str(v) for v in p.labels], p.value, p.counts, p.count, p.sum, p.min, p.max] for p in metric.points
        ],
    }


def _metric_from_dict(data: dict[str, Any]) -> MetricData:
    spec = MetricSpec(
        name=data["name"],
        kind=data["kind"],
        unit=data["unit"],
        description=data["description"],
        labels=tuple(data["labels"]),
        buckets=tuple(data["buckets"]),
        aggregation=data["aggregation"],
    )
    points = [
        Point(tuple(labels), value=value, counts=counts, count=count, sum=sum_, min=min_, max=max_)
        for labels, value, counts, count, sum_, min_, max_ in data["points"]
    ]
    return MetricData(spec, points)


@dataclass(slots=True)
class SnapshotStore:
    """The shared directory of worker snapshots; one file per worker process."""

    directory: Path
    pid: int
    instance: str

    @property
    def path(self) -> Path:
        return self.directory / f"{_FILE_PREFIX}{self.pid}-{self.instance}.json"

    def write(self, snapshot: WorkerSnapshot) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_bytes(snapshot.to_json())
        os.replace(temporary, self.path)

    def read_others(self) -> list[WorkerSnapshot]:
        snapshots = []
        own = self.path.name
        for path in self.directory.glob(f"{_FILE_PREFIX}*.json"):
            if path.name == own:
                continue
            try:
                snapshots.append(WorkerSnapshot.from_json(path.read_bytes()))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # vanished or half-written by a crashed worker: skip this scrape
        return snapshots


def clear_snapshots(directory: Path) -> None:
    """Forget the snapshots of a previous server run (``serve`` calls this before starting workers)."""
    for path in directory.glob(f"{_FILE_PREFIX}*"):
        with contextlib.suppress(OSError):
            path.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(slots=True)
class _Merging:
    spec: MetricSpec
    points: dict[Labels, Point] = field(default_factory=dict)
    values: dict[Labels, list[float]] = field(default_factory=dict)


def merge(snapshots: Iterable[WorkerSnapshot]) -> list[MetricData]:
    """One view of every worker's metrics (see the module docstring for the rules)."""
    merged: dict[str, _Merging] = {}
    live = 0
    for snapshot in snapshots:
        is_live = not snapshot.final and _alive(snapshot.pid)
        live += is_live
        for metric in snapshot.metrics:
            spec = metric.spec
            into = merged.setdefault(spec.name, _Merging(spec))
            if into.spec.kind != spec.kind or into.spec.buckets != spec.buckets:
                continue  # a worker running another version: its data cannot be combined
            if spec.kind in ("gauge", "updowncounter"):
                if is_live:
                    for point in metric.points:
                        into.values.setdefault(_text(point.labels), []).append(point.value)
                continue
            for point in metric.points:
                _accumulate(into.points, point)
    out = []
    for into in merged.values():
        if into.spec.kind in ("gauge", "updowncounter"):
            points = [Point(labels, value=_combine(into.spec, values)) for labels, values in into.values.items()]
            out.append(MetricData(into.spec, points))
        else:
            out.append(MetricData(into.spec, list(into.points.values())))
    out.append(MetricData(WORKERS_SPEC, [Point((), value=float(live))]))
    return out


def _combine(spec: MetricSpec, values: list[float]) -> float:
    if spec.aggregation == "max":
        return max(values)
    if spec.aggregation == "min":
        return min(values)
    return float(sum(values))


def _text(labels: Labels) -> Labels:
    # Live values may be ints (status codes); snapshots read back from files hold strings.
    return tuple(str(value) for value in labels)


def _accumulate(points: dict[Labels, Point], point: Point) -> None:
    labels = _text(point.labels)
    existing = points.get(labels)
    if existing is None:
        points[labels] = Point(
            labels,
            value=point.value,
            counts=list(point.counts) if point.counts is not None else None,
            count=point.count,
            sum=point.sum,
            min=point.min,
            max=point.max,
        )
        return
    existing.value += point.value
    existing.count += point.count
    existing.sum += point.sum
    existing.min = min(existing.min, point.min)
    existing.max = max(existing.max, point.max)
    if existing.counts is not None and point.counts is not None:
        existing.counts = [a + b for a, b in zip(existing.counts, point.counts, strict=True)]


def snapshot_of(metrics: list[MetricData], instance: str, *, final: bool = False) -> WorkerSnapshot:
    return WorkerSnapshot(pid=os.getpid(), instance=instance, written_at=time.time(), metrics=metrics, final=final)
