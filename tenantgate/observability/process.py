"""The process and garbage-collector metrics prometheus_client's default collectors export, under the same names.

So the dashboards and alerts written for any Python service (CPU, resident memory, open file descriptors, restarts
via the start time, collections) work on ``/metrics`` too, without loading prometheus_client, whose registry would
sit beside the gateway's own (wire/prometheus.py says why there is no second one). The values are read as
prometheus_client reads them: ``/proc/self`` on Linux (elsewhere the gauges that need it are left out), and
``gc.get_stats()``. Read at collection time, never on the request path.

With ``serve --workers N`` the merge (exposition.py) adds the counters over every worker, also exited ones (CPU
seconds and collections of the whole server), sums resident and virtual memory over live workers (what a
container limit sees), takes the most open descriptors of any worker against the lowest limit (a per-process
ratio to alert on), and the earliest start time of a live worker.
"""

from __future__ import annotations

import gc
import os
import resource
import time
from pathlib import Path

from tenantgate.observability.metrics import MetricRegistry

_PROC = Path("/proc/self")
_GENERATIONS = ("generation",)
_IMPORTED_AT = time.time()


def _stat_fields() -> list[bytes]:
    """``/proc/self/stat`` after the command name (which may hold spaces): field 3 (state) is index 0."""
    data = (_PROC / "stat").read_bytes()
    return data[data.rfind(b")") + 2 :].split()


def _start_time() -> float:
    """Seconds since the epoch when this process started (boot time plus its start in clock ticks)."""
    try:
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
        return boot + float(_stat_fields()[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return _IMPORTED_AT  # no /proc: when the gateway's code was loaded, close enough


def _resident_bytes() -> float:
    return float(int(_stat_fields()[21]) * os.sysconf("SC_PAGE_SIZE"))


def _virtual_bytes() -> float:
    return float(int(_stat_fields()[20]))


def _open_fds() -> int:
    return len(os.listdir(_PROC / "fd"))


def _gc(field: str) -> list[tuple[tuple[str], float]]:
    return [((str(generation),), float(stats[field])) for generation, stats in enumerate(gc.get_stats())]


def register_process_metrics(registry: MetricRegistry) -> None:
    start = _start_time()
    registry.register_counter(
        "process.cpu.seconds",
        lambda: sum(os.times()[:2]),
        unit="s",
        description="Total user and system CPU time spent in seconds",
    )
    registry.register_gauge(
        "process.resident_memory",
        _resident_bytes,
        unit="By",
        description="Resident memory size in bytes",
    )
    registry.register_gauge(
        "process.virtual_memory",
        _virtual_bytes,
        unit="By",
        description="Virtual memory size in bytes",
    )
    registry.register_gauge(
        "process.open_fds", _open_fds, description="Number of open file descriptors", aggregation="max"
    )
    registry.register_gauge(
        "process.max_fds",
        lambda: resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        description="Maximum number of open file descriptors",
        aggregation="min",
    )
    registry.register_gauge(
        "process.start_time",
        lambda: start,
        unit="s",
        description="Start time of the process since unix epoch in seconds",
        aggregation="min",
    )
    registry.register_counter(
        "python.gc.objects.collected",
        lambda: _gc("collected"),
        unit="{object}",
        description="Objects collected during gc",
        labels=_GENERATIONS,
    )
    registry.register_counter(
        "python.gc.objects.uncollectable",
        lambda: _gc("uncollectable"),
        unit="{object}",
        description="Uncollectable objects found during GC",
        labels=_GENERATIONS,
    )
    registry.register_counter(
        "python.gc.collections",
        lambda: _gc("collections"),
        unit="{collection}",
        description="Number of times this generation was collected",
        labels=_GENERATIONS,
    )
