"""Back-pressure: a key that keeps hammering after its refusals gets its further 429s late, a bounded number at once;
end to end, a closed-loop client over its RPM slows itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tenantgate.platform.limits.pacing import RefusalPacer
from tests.platform.limits.conftest import MESSAGES, tenant_with_key
from tests.support.gateway import Gateway


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_refusals_beyond_the_allowance_wait_for_the_delay_and_other_keys_do_not() -> None:
    clock = Clock()
    pacer = RefusalPacer(delay=0.2, after=3, max_held=10, clock=clock)
    for _ in range(3):
        await pacer.pace("key_a", clock.now)
    assert pacer.delayed == 0
    began = time.monotonic()
    await pacer.pace("key_a", clock.now)
    assert time.monotonic() - began >= 0.19
    await pacer.pace("key_b", clock.now)  # another key has its own allowance
    assert pacer.delayed == 1 and pacer.held == 0


async def test_the_delay_counts_from_the_request_and_never_passes_its_retry_after() -> None:
    clock = Clock()
    pacer = RefusalPacer(delay=5.0, after=0, max_held=10, clock=clock)
    await pacer.pace("key_a", clock.now)  # the first of a second is never held
    began = time.monotonic()
    await pacer.pace("key_a", clock.now - 4.9)  # arrived 4.9 s ago: 0.1 s left
    await pacer.pace("key_a", clock.now, retry_after=0.1)  # its own retry-after is shorter than the delay
    elapsed = time.monotonic() - began
    assert 0.19 <= elapsed < 4.0
    assert pacer.delayed == 2
    await pacer.pace("key_a", clock.now - 6.0)  # already slower than the delay: sent at once
    assert pacer.delayed == 2


async def test_at_most_max_held_refusals_wait_at_once_and_the_allowance_comes_back_each_second() -> None:
    clock = Clock()
    pacer = RefusalPacer(delay=0.2, after=1, max_held=2, clock=clock)
    await pacer.pace("key_a", clock.now)
    await asyncio.gather(*(pacer.pace("key_a", clock.now) for _ in range(5)))
    assert pacer.delayed == 2 and pacer.over_capacity == 3
    clock.now += 1.0
    await pacer.pace("key_a", clock.now)
    assert pacer.delayed == 2  # a new second: refused at once again


def test_pacing_off_sends_every_refusal_at_once() -> None:
    pacer = RefusalPacer(delay=0, after=1, max_held=10)
    for _ in range(5):
        asyncio.run(pacer.pace("key_a", time.perf_counter()))
    assert pacer.delayed == 0


@pytest.mark.slow
def test_a_closed_loop_client_over_its_rpm_is_slowed_by_its_refusals(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(
        database_url=sqlite_url,
        upstream_base_url=dev_upstream,
        refusal_delay_seconds=0.3,
        refusal_delay_after=2,
    )
    key = tenant_with_key(gateway, rpm=1)["key"]
    statuses: list[int] = []
    took: list[float] = []
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 2}
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        for _ in range(6):
            began = time.monotonic()
            statuses.append(client.post("/chat/completions", json=body).status_code)
            took.append(time.monotonic() - began)
    assert statuses == [200, 429, 429, 429, 429, 429]
    # The first two refusals of the second go out at once; the next ones no sooner than 0.3 s after they were sent.
    assert all(t >= 0.29 for t in took[3:]), took
    assert gateway.runtime.pacer.delayed == 3
    assert gateway.runtime.limiter.known is not None and gateway.runtime.limiter.known.refused >= 4
