"""Merging worker snapshots into one /metrics: what adds up, what only counts while a worker lives."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tenantgate.observability.exposition import SnapshotStore, merge, snapshot_of
from tenantgate.observability.metrics import MetricRegistry, MetricSpec
from tenantgate.observability.telemetry import Telemetry
from tenantgate.wire.prometheus import prometheus_name, render_prometheus
from tests.conftest import make_settings


def _parse(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _registry(requests: float, in_flight: float, spool: float) -> MetricRegistry:
    registry = MetricRegistry()
    registry.counter("tg.requests", labels=("route",)).add(("/v1/chat/completions",), requests)
    registry.histogram("tg.latency", unit="s", buckets=(0.1, 1.0)).record((), 0.5)
    registry.register_gauge("tg.in_flight", lambda: in_flight)
    registry.register_gauge("tg.spool", lambda: spool, unit="By", aggregation="max")
    return registry


def test_prometheus_names_follow_the_otel_compatibility_rules() -> None:
    assert prometheus_name(MetricSpec("http.server.request.duration", "histogram", "s")) == (
        "http_server_request_duration_seconds"
    )
    assert prometheus_name(MetricSpec("gen_ai.client.token.usage", "histogram", "{token}")) == (
        "gen_ai_client_token_usage"
    )
    assert prometheus_name(MetricSpec("tenantgate.upstream.attempts", "counter", "{attempt}")) == (
        "tenantgate_upstream_attempts_total"
    )
    assert prometheus_name(MetricSpec("tenantgate.metering.spool.size", "gauge", "By")) == (
        "tenantgate_metering_spool_size_bytes"
    )


def test_counters_of_exited_workers_still_count_but_their_gauges_do_not() -> None:
    live = snapshot_of(_registry(5, in_flight=2, spool=100).collect(), "live")
    exited = snapshot_of(_registry(7, in_flight=9, spool=900).collect(), "exited")
    exited.pid = _dead_pid()
    samples = _parse(render_prometheus(merge([live, exited])))
    assert samples[("tg_requests_total", (("route", "/v1/chat/completions"),))] == 12
    assert samples[("tg_latency_seconds_count", ())] == 2
    assert samples[("tg_latency_seconds_bucket", (("le", "1"),))] == 2
    assert samples[("tg_in_flight", ())] == 2
    assert samples[("tg_spool_bytes", ())] == 100
    assert samples[("tenantgate_workers", ())] == 1


def test_gauges_combine_by_their_declared_aggregation_and_a_final_snapshot_has_none() -> None:
    one = snapshot_of(_registry(1, in_flight=2, spool=100).collect(), "one")
    two = snapshot_of(_registry(1, in_flight=3, spool=300).collect(), "two")
    stopped = snapshot_of(_registry(1, in_flight=50, spool=5000).collect(), "stopped", final=True)
    samples = _parse(render_prometheus(merge([one, two, stopped])))
    assert samples[("tg_in_flight", ())] == 5  # sum over live workers
    assert samples[("tg_spool_bytes", ())] == 300  # max
    assert samples[("tg_requests_total", (("route", "/v1/chat/completions"),))] == 3
    assert samples[("tenantgate_workers", ())] == 2


def test_scrapes_answered_by_different_workers_never_go_backwards(tmp_path: Path) -> None:
    a, b = (Telemetry(make_settings(metrics_dir=tmp_path)) for _ in range(2))
    assert a.gateway is not None and b.gateway is not None

    def retries(text: bytes) -> float:
        return sum(v for (name, _), v in _parse(text).items() if name == "tenantgate_upstream_retries_total")

    async def scenario() -> list[float]:
        a.gateway.retries.add(("default",), 5)  # type: ignore[union-attr]
        await a.write_snapshot()  # a periodic snapshot: the file says 5
        a.gateway.retries.add(("default",), 5)  # type: ignore[union-attr]
        by_a = retries(await a.prometheus())  # 10, from a's live counter
        b.gateway.retries.add(("default",), 1)  # type: ignore[union-attr]
        by_b = retries(await b.prometheus())  # must not fall back to a's periodic 5
        a.gateway.retries.add(("default",), 100)  # type: ignore[union-attr]
        again_by_b = retries(await b.prometheus())  # a has not written since: still 11
        by_a_later = retries(await a.prometheus())
        return [by_a, by_b, again_by_b, by_a_later]

    assert asyncio.run(scenario()) == [10, 11, 11, 111]
    assert len(list(tmp_path.glob("metrics-*.json"))) == 2


def test_label_values_are_escaped(tmp_path: Path) -> None:
    registry = MetricRegistry()
    registry.counter("tg.odd", labels=("value",)).add(('quote " backslash \\ newline \n end',))
    samples = _parse(render_prometheus(merge([snapshot_of(registry.collect(), "x")])))
    assert samples[("tg_odd_total", (("value", 'quote " backslash \\ newline \n end'),))] == 1


def test_snapshot_files_round_trip(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, 1, "a")
    snapshot = snapshot_of(_registry(3, in_flight=1, spool=2).collect(), "a")
    store.write(snapshot)
    (read,) = SnapshotStore(tmp_path, 2, "b").read_others()
    assert render_prometheus(merge([read])) == render_prometheus(merge([snapshot]))
