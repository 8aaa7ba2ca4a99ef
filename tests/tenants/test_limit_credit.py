"""Local credit of the Redis limit store: a busy principal's requests admitted without a round trip each, with every
window still holding its limit, across processes, and the unused credit given back.

Real Redis; a fake clock drives the scripts and the credits' lifetimes (both stores of a "two processes" test share
it, as two replicas share the Redis clock).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from tenantgate.tenants.limits.checks import MINUTE_MS, Check, Kind, Settlement
from tenantgate.tenants.limits.guard import GuardedStore
from tenantgate.tenants.limits.memory import MemoryLimitStore
from tenantgate.tenants.limits.redis import RedisLimitStore
from tenantgate.wire.resp import RespClient
from tests.tenants.test_limit_store_contract import T0, FakeClock


class CountingStore:
    """How many admissions of a store went to Redis."""

    def __init__(self, store: RedisLimitStore) -> None:
        self.store = store
        self.calls = 0
        original = store.client.evalsha_command

        def counted(script: Any, command: bytes) -> Awaitable[Any]:
            if script is store._admit:
                self.calls += 1
            return original(script, command)

        store.client.evalsha_command = counted  # type: ignore[method-assign]


@pytest.fixture
async def redis(redis_url: str, redis_prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    keys = [k async for k in client.scan_iter(match=f"{redis_prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def make_store(redis_url: str) -> AsyncIterator[Callable[[FakeClock], RedisLimitStore]]:
    stores: list[RedisLimitStore] = []

    def make(clock: FakeClock) -> RedisLimitStore:
        store = RedisLimitStore(RespClient.from_url(redis_url), clock=clock, credit=True)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()
        await store.client.aclose()


def window(prefix: str, name: str, limit: int, amount: int = 1) -> Check:
    return Check(name, "key", Kind.WINDOW, f"{prefix}:{{t}}:{name}", limit, amount, MINUTE_MS)


async def used_in_redis(redis: Redis, check: Check) -> int:
    return int(await redis.hget(check.key, "t") or 0)


async def test_a_busy_principal_is_admitted_from_credit_with_exact_headers(make_store, redis, redis_prefix) -> None:
    clock = FakeClock(T0 + 100)
    counting = CountingStore(make_store(clock))
    rpm = window(redis_prefix, "rpm", 1000)
    seen = []
    for _ in range(7):
        verdict = await counting.store.admit([rpm], "")
        assert verdict.admitted
        seen.append(verdict.states[0].used)
        clock.advance(10)
    # The second request asked for credit (4 more), the next four used it, the seventh asked Redis again.
    assert counting.calls == 3
    assert seen == [1, 2, 3, 4, 5, 6, 7]  # what x-ratelimit-remaining-requests comes from: the credit not counted
    assert await used_in_redis(redis, rpm) >= 7
    # A credit ends with the bucket it was charged in: a later request asks Redis even though credit is left.
    clock.advance(1_000)
    assert (await counting.store.admit([rpm], "")).admitted
    assert counting.calls == 4


async def test_two_processes_never_admit_more_than_the_limit_and_lose_nothing(make_store, redis, redis_prefix) -> None:
    clock = FakeClock(T0 + 100)
    stores = [make_store(clock), make_store(clock)]
    rpm = window(redis_prefix, "rpm", 300)
    admitted = 0
    rng = random.Random(7)
    for _ in range(900):
        verdict = await rng.choice(stores).admit([rpm], "")
        admitted += verdict.admitted
        clock.advance(1)  # 0.9 s in all: one bucket, so no credit has ended yet
    assert admitted <= 300
    # Credit still out may have refused a few; once its bucket ends it comes back, and the window fills to exactly
    # its limit - never beyond it.
    clock.advance(1_000)
    for _ in range(100):
        admitted += (await rng.choice(stores).admit([rpm], "")).admitted
    assert admitted == 300
    assert not (await stores[0].admit([rpm], "")).admitted
    assert not (await stores[1].admit([rpm], "")).admitted
    for store in stores:
        await store.close()
    assert await used_in_redis(redis, rpm) == 300


async def test_unused_credit_is_given_back_after_its_bucket_ends(make_store, redis, redis_prefix) -> None:
    clock = FakeClock(T0 + 100)
    store = make_store(clock)
    rpm = window(redis_prefix, "rpm", 10_000)
    for _ in range(3):  # the second is granted credit for four; the third takes one of them
        assert (await store.admit([rpm], "")).admitted
    assert await used_in_redis(redis, rpm) == 6
    clock.advance(1_000)
    # The sweep runs every second (real time) and finds the credit over.
    for _ in range(50):
        await asyncio.sleep(0.1)
        if await used_in_redis(redis, rpm) != 6:
            break
    assert await used_in_redis(redis, rpm) == 3


async def test_near_a_limit_every_request_asks_redis(make_store, redis, redis_prefix) -> None:
    clock = FakeClock(T0 + 100)
    counting = CountingStore(make_store(clock))
    rpm = window(redis_prefix, "rpm", 50)  # 1/16 of what is left is under the smallest grant
    for _ in range(10):
        assert (await counting.store.admit([rpm], "")).admitted
    assert counting.calls == 10
    assert await used_in_redis(redis, rpm) == 10


async def test_no_credit_in_the_last_moments_of_a_bucket(make_store, redis, redis_prefix) -> None:
    clock = FakeClock(T0 + 980)  # the per-minute window's 1 s bucket ends in 20 ms
    counting = CountingStore(make_store(clock))
    rpm = window(redis_prefix, "rpm", 10_000)
    for _ in range(5):
        assert (await counting.store.admit([rpm], "")).admitted
    assert counting.calls == 5
    assert await used_in_redis(redis, rpm) == 5


async def test_token_corrections_settle_against_the_credit_and_reach_redis_with_the_refund(
    make_store, redis, redis_prefix
) -> None:
    clock = FakeClock(T0 + 100)
    store = make_store(clock)
    guard = GuardedStore(store, MemoryLimitStore(), fail_open=False, retry_seconds=1.0)
    writes = store.client
    tpm_of = lambda estimate: window(redis_prefix, "tpm", 1_000_000, estimate)  # noqa: E731
    verdicts = []
    for _ in range(4):  # estimated 100 tokens each; the second is granted credit, the last two use it
        verdict, _ = await guard.admit([tpm_of(100)], "")
        verdicts.append(verdict)
    writes_before = writes.write_count
    for verdict in verdicts[2:]:  # each really used 40: 60 back, into the credit
        guard.settle_soon(Settlement(window_deltas=[(tpm_of(100), -60)], admitted_ms=verdict.now_ms), store)
    await guard.drain()
    assert writes.write_count == writes_before  # nothing sent
    third, _ = await guard.admit([tpm_of(100)], "")  # from the credit, which has the tokens given back
    assert third.states[0].used == 4 * 100 - 2 * 60 + 100
    await store.close()
    # Charged in Redis: the five requests' actual tokens only, once the unused credit came back.
    assert await used_in_redis(redis, tpm_of(100)) == 5 * 100 - 2 * 60


async def test_a_changed_limit_is_not_served_from_an_old_credit(make_store, redis, redis_prefix) -> None:
    clock = FakeClock(T0 + 100)
    counting = CountingStore(make_store(clock))
    for _ in range(2):
        assert (await counting.store.admit([window(redis_prefix, "rpm", 1000)], "")).admitted
    assert counting.calls == 2
    lowered = await counting.store.admit([window(redis_prefix, "rpm", 3)], "")
    assert counting.calls == 3  # asked Redis, after giving the old credit back in the same write
    assert lowered.admitted and lowered.states[0].used == 3
    assert not (await counting.store.admit([window(redis_prefix, "rpm", 3)], "")).admitted
    assert await used_in_redis(redis, window(redis_prefix, "rpm", 3)) == 3


async def test_limits_other_than_windows_never_use_credit(make_store, redis, redis_prefix) -> None:
    clock = FakeClock(T0 + 100)
    counting = CountingStore(make_store(clock))
    rpm = window(redis_prefix, "rpm", 10_000)
    slot = Check("concurrency", "key", Kind.CONCURRENCY, f"{redis_prefix}:{{t}}:inflight", 100, 1, 30_000)
    for i in range(6):
        assert (await counting.store.admit([rpm, slot], f"lease-{i}")).admitted
    assert counting.calls == 6
    assert await used_in_redis(redis, rpm) == 6


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_no_interval_of_a_window_ever_admits_more_than_the_limit(make_store, redis, redis_prefix, seed) -> None:
    """The limiter's guarantee (limits/checks.py), with credit on in two processes: in every interval of 60 s the
    requests and tokens admitted stay within RPM and TPM. Five minutes of random traffic, bursts and lulls, far
    above the limits, so most requests are refused and credit is granted, used, and given back all along."""
    rng = random.Random(seed)
    clock = FakeClock(T0 + 100)
    stores = [make_store(clock), make_store(clock)]
    admitted: list[tuple[float, int]] = []
    end = T0 + 5 * MINUTE_MS
    while clock.now < end:
        tokens = rng.randint(1, 40)
        checks = [window(redis_prefix, "rpm", 600), window(redis_prefix, "tpm", 9_000, tokens)]
        if (await rng.choice(stores).admit(checks, "")).admitted:
            admitted.append((clock.now, tokens))
        clock.advance(rng.choice((1, 2, 5, 20, 20, 50, 400)))
    assert all(store.credit_admissions > 100 for store in stores)  # the credit did its part in both
    start = 0
    requests = tokens_in_window = 0
    for moment, tokens in admitted:
        requests += 1
        tokens_in_window += tokens
        while admitted[start][0] <= moment - MINUTE_MS:
            requests -= 1
            tokens_in_window -= admitted[start][1]
            start += 1
        assert requests <= 600 and tokens_in_window <= 9_000, f"{requests} requests, {tokens_in_window} tokens"


async def test_a_look_at_the_limits_leaves_out_this_processs_unused_credit(make_store, redis, redis_prefix) -> None:
    clock = FakeClock(T0 + 100)
    store, other = make_store(clock), make_store(clock)
    rpm = window(redis_prefix, "rpm", 10_000)
    for _ in range(3):  # the second is granted credit for four; the third takes one of them
        assert (await store.admit([rpm], "")).admitted
    assert await used_in_redis(redis, rpm) == 6
    peek = Check("rpm", "key", Kind.WINDOW, rpm.key, 10_000, 0, MINUTE_MS)
    assert (await store.admit([peek], "", dry=True)).states[0].used == 3
    # Another process cannot tell this one's unused credit from use: it sees it counted.
    assert (await other.admit([peek], "", dry=True)).states[0].used == 6


async def test_a_burst_asks_redis_for_credit_once_and_quiet_principals_are_forgotten(
    make_store, redis, redis_prefix
) -> None:
    clock = FakeClock(T0 + 100)
    store = make_store(clock)
    wants: list[int] = []
    admit_in_redis = store._admit_in_redis

    async def recorded(checks: Any, lease: str, *, dry: bool, want: int) -> Any:
        wants.append(want)
        return await admit_in_redis(checks, lease, dry=dry, want=want)

    store._admit_in_redis = recorded  # type: ignore[method-assign]
    rpm = window(redis_prefix, "rpm", 100_000)
    assert (await store.admit([rpm], "")).admitted  # seen once: no credit yet
    verdicts = await asyncio.gather(*(store.admit([rpm], "") for _ in range(10)))
    assert all(v.admitted for v in verdicts)
    assert wants.count(0) == 10 and wants.count(4) == 1  # one asks for credit; the rest meanwhile ask plainly
    # Quiet for longer than IDLE_MS: the sweep gives the credit back and forgets the principal (bounded memory).
    clock.advance(11_000)
    for _ in range(50):
        await asyncio.sleep(0.1)
        if not store._accounts:
            break
    assert not store._accounts and not store._credit_of
    assert await used_in_redis(redis, rpm) == 11
