"""The in-process history behind the console's charts: frames of what moved, coarser tiers, workers merged, and
the chart arrays read from them."""

from __future__ import annotations

import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tenantgate.core.context import RequestContext
from tenantgate.core.exchange import Exchange
from tenantgate.observability.hook import PART_BUCKETS, GatewayMetrics, status_class
from tenantgate.observability.metrics import MetricRegistry
from tenantgate.observability.series import FRAME_SECONDS, History, HistoryStore, merged_tier
from tenantgate.platform.console.charts import Filters, chart_data, quantile


def _worker() -> tuple[MetricRegistry, GatewayMetrics]:
    registry = MetricRegistry()
    return registry, GatewayMetrics(registry)


def _now() -> float:
    """Just after a frame boundary, as the sampling task runs."""
    return (time.time() // FRAME_SECONDS) * FRAME_SECONDS + 0.05


def test_a_frame_holds_what_moved_since_the_previous_sample() -> None:
    registry, metrics = _worker()
    history = History()
    now = _now()
    metrics.requests.add(("ten_a", "m", "up", "2xx"), 5)
    history.sample(registry.collect(), now - 2 * FRAME_SECONDS)  # the baseline: earlier counts have no time
    metrics.requests.add(("ten_a", "m", "up", "2xx"), 3)
    metrics.requests.add(("ten_a", "m", "up", "429"), 2)
    history.sample(registry.collect(), now - FRAME_SECONDS)
    history.sample(registry.collect(), now)  # nothing moved
    frames = list(history.frames[0])
    assert [frame.start for frame in frames] == [int(now) - 2 * FRAME_SECONDS, int(now) - FRAME_SECONDS]
    moved = frames[-2].moves["tenantgate.proxy.requests"]
    assert moved == {"ten_a\x1fm\x1fup\x1f2xx": 3, "ten_a\x1fm\x1fup\x1f429": 2}
    assert "tenantgate.proxy.requests" not in frames[-1].moves
    # The coarser tiers hold the same increments, folded (into one coarse frame, or two when a coarse boundary fell
    # between the samples: the test runs at whatever time it is).
    coarse = [frame.moves.get("tenantgate.proxy.requests", {}) for frame in history.frames[1]]
    assert sum(moves.get("ten_a\x1fm\x1fup\x1f2xx", 0) for moves in coarse) == 3
    assert sum(moves.get("ten_a\x1fm\x1fup\x1f429", 0) for moves in coarse) == 2


def test_workers_frames_add_up_and_gauges_combine_as_declared(tmp_path: Path) -> None:
    now = _now()
    stores = []
    for pid, (requests, depth, lag) in enumerate(((4, 2, 1.5), (6, 3, 0.5)), start=1):
        registry, metrics = _worker()
        registry.register_gauge("tenantgate.metering.buffer.depth", lambda d=depth: d)
        registry.register_gauge("tenantgate.metering.write.lag", lambda v=lag: v, aggregation="max")
        history = History()
        history.sample(registry.collect(), now - FRAME_SECONDS)
        metrics.requests.add(("ten_a", "m", "up", "2xx"), requests)
        history.sample(registry.collect(), now)
        store = HistoryStore(tmp_path, pid, f"w{pid}")
        store.write(history)
        stores.append(store)
    (tmp_path / "series-99-stale.json").write_bytes(b"{not json")
    others = stores[0].read_others()
    assert len(others) == 1  # the other worker; a broken file is skipped
    own = [list(frames) for frames in History().frames]
    merged = merged_tier(h[0] for h in [own, *others, *stores[1].read_others()])
    frame = merged[int(now) // FRAME_SECONDS * FRAME_SECONDS - FRAME_SECONDS]
    assert frame.moves["tenantgate.proxy.requests"]["ten_a\x1fm\x1fup\x1f2xx"] == 10
    assert frame.moves["tenantgate.metering.buffer.depth"][""] == 5  # per-worker amounts add up
    assert frame.moves["tenantgate.metering.write.lag"][""] == 1.5  # the worst lag, not the sum


def test_chart_data_separates_429s_from_errors_and_leaves_gaps_where_nothing_ran() -> None:
    registry, metrics = _worker()
    history = History()
    now = _now()
    history.sample(registry.collect(), now - FRAME_SECONDS)
    metrics.requests.add(("ten_a", "gpt", "up", "2xx"), 20)
    metrics.requests.add(("ten_a", "gpt", "up", "429"), 7)
    metrics.requests.add(("ten_b", "gpt", "up", "5xx"), 3)
    for value in (0.05, 0.05, 0.3, 2.0):
        metrics.request_duration.record(("chat", "openai", "gpt", "", "ten_a"), value)
    metrics.request_duration.record(("chat", "openai", "gpt", "rate_limit_exceeded", "ten_a"), 0.001)
    metrics.token_usage.record(("chat", "openai", "gpt", "input", "ten_a"), 100)
    metrics.time.record(("gateway",), 0.0004)
    history.sample(registry.collect(), now)

    data = chart_data([[list(f) for f in history.frames]], "15m", Filters())
    assert len(data["t"]) == 90 and data["step_seconds"] == FRAME_SECONDS
    rates = data["requests_per_second"]
    assert rates["2xx"][-1] == 2.0 and rates["429"][-1] == 0.7 and rates["5xx"][-1] == 0.3
    assert rates["2xx"][0] is None  # before the gateway ran: a gap, not a zero
    totals = data["totals"]
    assert (totals["requests"], totals["429"], totals["5xx"]) == (30, 7, 3)
    assert totals["error_ratio"] == 0.1 and totals["rate_limited_ratio"] == round(7 / 30, 6)
    assert data["tokens_per_second"]["input"][-1] == 10.0
    # Latency leaves out the 1 ms refusal: the limiter answering fast must not make the upstream look fast.
    assert data["latency_seconds"]["p50"][-1] > 0.04
    assert 0 < data["time_seconds"]["gateway"]["p50"][-1] <= PART_BUCKETS[2]

    only_b = chart_data([[list(f) for f in history.frames]], "15m", Filters(tenant="ten_b"))
    assert only_b["totals"]["requests"] == 3 and only_b["requests_per_second"]["2xx"][-1] == 0.0
    assert "time_seconds" not in only_b  # not kept per tenant: left out rather than shown whole


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=2, max_size=20), st.floats(0.01, 0.99))
def test_quantile_stays_within_the_bucket_bounds(counts: list[int], q: float) -> None:
    bounds = [float(2**i) for i in range(len(counts) - 1)]
    value = quantile(bounds, counts, q)
    if sum(counts) == 0:
        assert value is None
    else:
        assert value is not None and 0 <= value <= bounds[-1]


def test_status_class_puts_429_and_client_disconnects_apart() -> None:
    exchange = Exchange(ctx=RequestContext.__new__(RequestContext), operation="chat", path="/v1/chat/completions")
    for status, disconnected, expected in (
        (200, False, "2xx"),
        (429, False, "429"),
        (400, False, "4xx"),
        (502, False, "5xx"),
        (0, False, "5xx"),
        (200, True, "4xx"),
    ):
        exchange.status, exchange.client_disconnected = status, disconnected
        assert status_class(exchange) == expected
