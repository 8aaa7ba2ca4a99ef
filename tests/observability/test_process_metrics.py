"""The process and GC metrics on /metrics are prometheus_client's default collectors', read the same way: the
same names, types and labels, and the same values (read a moment apart) as ProcessCollector and GCCollector."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tenantgate.observability.exposition import merge, snapshot_of
from tenantgate.observability.metrics import MetricRegistry
from tenantgate.observability.process import register_process_metrics
from tenantgate.wire.prometheus import render_prometheus

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _parse(text: str) -> tuple[dict[str, str], Samples]:
    types, samples = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return types, samples


def _ours() -> tuple[dict[str, str], Samples]:
    registry = MetricRegistry()
    register_process_metrics(registry)
    assert len(registry.collect()) == len(registry.names())  # every reading worked on this machine
    return _parse(render_prometheus(registry.collect()).decode())


def _theirs() -> tuple[dict[str, str], Samples]:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    return _parse(generate_latest(registry).decode())


def test_the_same_metrics_as_prometheus_clients_default_collectors() -> None:
    gc.disable()  # no collection between the two readings
    try:
        our_types, ours = _ours()
        their_types, theirs = _theirs()
    finally:
        gc.enable()
    assert our_types == their_types
    assert set(ours) == set(theirs)
    for sample in ("process_start_time_seconds", "process_max_fds"):
        assert abs(ours[(sample, ())] - theirs[(sample, ())]) < 0.02, sample
    for generation in "012":
        for sample in ("python_gc_collections_total", "python_gc_objects_collected_total"):
            key = (sample, (("generation", generation),))
            assert ours[key] == theirs[key], key
    assert abs(ours[("process_cpu_seconds_total", ())] - theirs[("process_cpu_seconds_total", ())]) < 0.5
    for sample in ("process_resident_memory_bytes", "process_virtual_memory_bytes"):
        assert abs(ours[(sample, ())] - theirs[(sample, ())]) <= 0.05 * theirs[(sample, ())], sample
    assert abs(ours[("process_open_fds", ())] - theirs[("process_open_fds", ())]) <= 2


def test_workers_combine_sensibly_in_the_merge() -> None:
    registry = MetricRegistry()
    register_process_metrics(registry)
    first, second = snapshot_of(registry.collect(), "a"), snapshot_of(registry.collect(), "b")
    for snapshot, (cpu, rss, fds, limit, start) in ((first, (2, 100, 10, 1024, 50)), (second, (3, 200, 30, 512, 40))):
        values = {
            "process.cpu.seconds": cpu,
            "process.resident_memory": rss,
            "process.open_fds": fds,
            "process.max_fds": limit,
            "process.start_time": start,
        }
        for metric in snapshot.metrics:
            if metric.spec.name in values:
                metric.points[0].value = values[metric.spec.name]
    _, merged = _parse(render_prometheus(merge([first, second])).decode())
    assert merged[("process_cpu_seconds_total", ())] == 5  # the whole server's CPU
    assert merged[("process_resident_memory_bytes", ())] == 300  # what a container's memory limit sees
    assert (merged[("process_open_fds", ())], merged[("process_max_fds", ())]) == (30, 512)  # the worst worker
    assert merged[("process_start_time_seconds", ())] == 40  # the oldest live worker
