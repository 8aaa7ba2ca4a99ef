"""``tenantgate_request_time_seconds`` splits a proxied request's time into the gateway's own work, the upstream's
time and waiting by design (retry backoff, a work slot's queue, back-pressure): a backoff is not gateway overhead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import openai
import pytest

from tenantgate.core.context import RequestContext
from tenantgate.core.exchange import Attempt, Exchange
from tenantgate.core.principal import Limits, Principal
from tenantgate.observability.hook import GatewayMetrics, TelemetryHook
from tenantgate.observability.metrics import MetricRegistry
from tenantgate.platform.workslots import WorkSlots
from tests.conftest import make_settings
from tests.support.gateway import Gateway
from tests.support.prometheus import scrape

MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
PART = "tenantgate_time_part"
PRINCIPAL = Principal("key_1", "tg-x", "k", "ten_1", "t", True, None, Limits(), Limits(), None)


def _exchange(started: float = 0.0) -> Exchange:
    return Exchange(
        ctx=RequestContext("req", PRINCIPAL), operation="chat", path="/v1/chat/completions", started=started
    )


def _parts(metrics: GatewayMetrics) -> dict[str, tuple[int, float]]:
    return {str(labels[0]): (series.count, series.sum) for labels, series in metrics.time.series.items()}


def test_the_gaps_between_attempts_and_what_the_request_queued_for_are_waiting() -> None:
    metrics = GatewayMetrics(MetricRegistry())
    hook = TelemetryHook(make_settings(), metrics, None)
    exchange = _exchange(started=100.0)
    exchange.waited = 0.5  # in a work slot's queue
    exchange.attempt_log = [Attempt("default", 100.6, 101.0, 500), Attempt("default", 103.0, 104.0, 200)]
    exchange.status, exchange.finished_at = 200, 104.1
    hook.finish(exchange)
    parts = _parts(metrics)
    assert {part: count for part, (count, _) in parts.items()} == {"gateway": 1, "upstream": 1, "waiting": 1}
    assert parts["upstream"][1] == pytest.approx(1.4)
    assert parts["waiting"][1] == pytest.approx(2.5)  # 0.5 queued + 2.0 between the attempts
    assert parts["gateway"][1] == pytest.approx(0.2)  # 0.1 before the first attempt, 0.1 after the last


def test_a_request_that_never_waited_records_no_waiting() -> None:
    metrics = GatewayMetrics(MetricRegistry())
    hook = TelemetryHook(make_settings(), metrics, None)
    exchange = _exchange(started=10.0)
    exchange.attempt_log = [Attempt("default", 10.001, 10.5, 200)]
    exchange.status, exchange.finished_at = 200, 10.502
    hook.finish(exchange)
    assert set(_parts(metrics)) == {"gateway", "upstream"}


async def test_the_time_a_request_queued_for_a_work_slot_is_on_its_exchange() -> None:
    slots = WorkSlots(slots=1, queue_per_tenant=10, wait_seconds=5)
    holder, queued = _exchange(), _exchange()
    await slots.acquire(holder)
    waiting = asyncio.create_task(slots.acquire(queued))
    await asyncio.sleep(0.2)
    slots.release(holder)
    await waiting
    assert holder.waited == 0.0  # a free slot is taken at once
    assert 0.2 <= queued.waited < 1.0


def test_retry_backoff_is_waiting_not_gateway_overhead(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, upstream_max_retries=2)
    key = gateway.new_key()
    client = gateway.client(key["key"])
    # Two 503s that each ask for 300 ms, then an answer: the gateway sits out 0.6 s between its attempts.
    faults = {"x-dev-fail": "503", "x-dev-retry-after-ms": "300", "x-dev-fail-times": "2", "x-dev-fail-key": key["id"]}
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=faults)
    metrics = scrape(gateway.url)
    time = "tenantgate_request_time_seconds"
    assert metrics.total(f"{time}_count", **{PART: "waiting"}) == 1
    assert metrics.total(f"{time}_sum", **{PART: "waiting"}) >= 0.6
    assert metrics.total(f"{time}_sum", **{PART: "gateway"}) < 0.3  # its own work only, however busy the machine
