"""One contract for both limit stores: the same assertions against memory and a real Redis.

A fake clock drives both (the Redis scripts take it as an argument), so windows can be crossed without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from tenantgate.tenants.limits.checks import DAY_MS, MINUTE_MS, NEVER, SEED, Check, Kind, Settlement
from tenantgate.tenants.limits.memory import MemoryLimitStore
from tenantgate.tenants.limits.redis import RedisLimitStore
from tenantgate.wire.resp import Endpoint, RespClient

T0 = 1_800_000_000_000  # ms, on a bucket boundary


@dataclass
class FakeClock:
    now: float = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms


Store = MemoryLimitStore | RedisLimitStore


@pytest.fixture(params=["memory", "redis"])
async def store_and_clock(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[Store, FakeClock, Callable[[str], str]]]:
    clock = FakeClock()

    def key(name: str) -> str:
        return f"{redis_prefix}:{{t}}:{name}"

    if request.param == "memory":
        yield MemoryLimitStore(clock=clock), clock, key
        return
    client = Redis.from_url(redis_url)
    store = RedisLimitStore(RespClient.from_url(redis_url), clock=clock)
    try:
        yield store, clock, key
    finally:
        await store.close()
        await store.client.aclose()
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def rpm(key: str, limit: int, amount: int = 1) -> Check:
    return Check("rpm", "key", Kind.WINDOW, key, limit, amount, MINUTE_MS)


async def test_window_admits_exactly_the_limit_then_says_when_to_retry(store_and_clock) -> None:
    store, clock, key = store_and_clock
    check = rpm(key("rpm"), 3)
    for expected_used in (1, 2, 3):
        verdict = await store.admit([check], "")
        assert verdict.admitted and verdict.states[0].used == expected_used
        clock.advance(10_000)
    refused = await store.admit([check], "")
    assert not refused.admitted
    state = refused.states[0]
    assert state.used == 3 and state.remaining == 0
    # The first hit (t=0, bucket [0 s, 1 s)) leaves the window when its bucket's end does: at 61 s; now is 30 s.
    assert state.retry_ms == 31_000
    # Reset: when the newest hit (t=20 s) has left too.
    assert state.reset_ms == 51_000
    clock.advance(30_999)
    assert not (await store.admit([check], "")).admitted
    clock.advance(1)
    again = await store.admit([check], "")
    assert again.admitted and again.states[0].used == 3


async def test_window_holds_in_every_interval_not_only_per_calendar_minute(store_and_clock) -> None:
    store, clock, key = store_and_clock
    check = rpm(key("rpm"), 2)
    clock.advance(59_000)  # just before a minute boundary
    assert (await store.admit([check], "")).admitted
    assert (await store.admit([check], "")).admitted
    clock.advance(2_000)  # a fixed window would start afresh here
    assert not (await store.admit([check], "")).admitted


async def test_tokens_window_counts_amounts_and_refuses_what_can_never_fit(store_and_clock) -> None:
    store, _clock, key = store_and_clock
    tpm = Check("tpm", "key", Kind.WINDOW, key("tpm"), 100, 60, MINUTE_MS)
    assert (await store.admit([tpm], "")).admitted
    refused = await store.admit([tpm], "")
    assert not refused.admitted and refused.states[0].used == 60
    too_large = Check("tpm", "key", Kind.WINDOW, key("tpm"), 100, 101, MINUTE_MS)
    assert (await store.admit([too_large], "")).states[0].retry_ms == NEVER


async def test_a_refused_check_charges_none_of_the_others(store_and_clock) -> None:
    store, _clock, key = store_and_clock
    key_rpm = rpm(key("key-rpm"), 10)
    tenant_rpm = Check("rpm", "tenant", Kind.WINDOW, key("tenant-rpm"), 1, 1, MINUTE_MS)
    day = Check("rpd", "key", Kind.WINDOW, key("rpd"), 10, 1, DAY_MS)
    assert (await store.admit([key_rpm, tenant_rpm, day], "")).admitted
    refused = await store.admit([key_rpm, tenant_rpm, day], "")
    assert not refused.admitted
    assert [s.passed for s in refused.states] == [True, False, True]
    looks = [rpm(key("key-rpm"), 10, 0), Check("rpd", "key", Kind.WINDOW, key("rpd"), 10, 0, DAY_MS)]
    peek = await store.admit(looks, "", dry=True)
    assert [s.used for s in peek.states] == [1, 1]


async def test_peek_charges_nothing(store_and_clock) -> None:
    store, _clock, key = store_and_clock
    check = rpm(key("rpm"), 1)
    for _ in range(3):
        verdict = await store.admit([check], "", dry=True)
        assert verdict.admitted and verdict.states[0].used == 0
    assert (await store.admit([check], "")).admitted


async def test_concurrency_leases_are_released_or_expire(store_and_clock) -> None:
    store, clock, key = store_and_clock
    slot = Check("concurrency", "key", Kind.CONCURRENCY, key("inflight"), 2, 1, 30_000)
    assert (await store.admit([slot], "a")).admitted
    assert (await store.admit([slot], "b")).admitted
    refused = await store.admit([slot], "c")
    assert not refused.admitted and refused.states[0].used == 2 and refused.states[0].retry_ms > 0
    await store.settle(Settlement(lease="a", release=[slot]))
    assert (await store.admit([slot], "c")).admitted
    # "b" and "c" are never released (their process died): they stop counting once their lease expires.
    assert not (await store.admit([slot], "d")).admitted
    clock.advance(30_001)
    assert (await store.admit([slot], "d")).admitted


async def test_token_estimates_are_corrected_to_actual_usage(store_and_clock) -> None:
    store, clock, key = store_and_clock
    tpm = Check("tpm", "key", Kind.WINDOW, key("tpm"), 1000, 500, MINUTE_MS)
    verdict = await store.admit([tpm], "")
    clock.advance(2_500)
    # Estimated 500, used 120: the difference is refunded from the bucket the request was admitted in.
    await store.settle(Settlement(window_deltas=[(tpm, -380)], admitted_ms=verdict.now_ms))
    peek = await store.admit([Check("tpm", "key", Kind.WINDOW, key("tpm"), 1000, 0, MINUTE_MS)], "", dry=True)
    assert peek.states[0].used == 120
    # Used more than estimated: the excess is charged now, so it counts for a full window from now.
    await store.settle(Settlement(window_deltas=[(tpm, 300)], admitted_ms=verdict.now_ms))
    clock.advance(59_000)
    peek = await store.admit([Check("tpm", "key", Kind.WINDOW, key("tpm"), 1000, 0, MINUTE_MS)], "", dry=True)
    assert peek.states[0].used == 300


async def test_monthly_counter_reserves_corrects_and_refuses(store_and_clock) -> None:
    store, _clock, key = store_and_clock

    def quota(amount: int) -> Check:
        return Check("monthly_tokens", "tenant", Kind.COUNTER, key("month"), 100, amount, 40 * DAY_MS)

    await store.seed(quota(0), 0)
    verdict = await store.admit([quota(80)], "")
    assert verdict.admitted and verdict.states[0].used == 80 and verdict.states[0].reserved == 80
    assert (await store.admit([quota(30)], "")).states[0].retry_ms == NEVER
    await store.settle(Settlement(counter_deltas=[(quota(80), -50, 80)]))  # held 80, actually used 30
    peek = await store.admit([quota(0)], "", dry=True)
    assert (peek.states[0].used, peek.states[0].reserved) == (30, 0)
    assert (await store.admit([quota(70)], "")).admitted
    assert not (await store.admit([quota(1)], "")).admitted
    await store.settle(Settlement(counter_deltas=[(quota(1), -1000, 70)]))
    assert (await store.admit([quota(0)], "", dry=True)).states[0].used == 0


async def test_a_month_counter_the_store_does_not_hold_is_seeded_never_guessed(store_and_clock) -> None:
    """A missing counter (start, Redis flushed) admits nothing until it is seeded; the first seed wins; a
    correction arriving for a counter that is gone does not bring it back as if it were the whole month."""
    store, _clock, key = store_and_clock
    budget = Check("monthly_budget", "tenant", Kind.COUNTER, key("spend"), 1_000_000, 400_000, 40 * DAY_MS)
    missing = await store.admit([budget], "")
    assert not missing.admitted and missing.states[0].retry_ms == SEED
    assert (await store.admit([budget], "", dry=True)).states[0].retry_ms == SEED
    await store.settle(Settlement(counter_deltas=[(budget, 5, 0)]))  # a late settlement: ignored
    assert (await store.admit([budget], "", dry=True)).states[0].retry_ms == SEED
    assert await store.seed(budget, 500_000) is True
    assert await store.seed(budget, 0) is False  # another process seeding later changes nothing, and knows it
    assert (await store.admit([budget], "")).admitted  # 500,000 spent + 400,000 held
    refused = await store.admit([budget], "")
    assert not refused.admitted and refused.states[0].retry_ms == NEVER
    assert (refused.states[0].used, refused.states[0].reserved) == (900_000, 400_000)


async def _lose(store: Store, check: Check) -> None:
    """The store loses a counter and what it holds (Redis restarted without persistence, a key evicted)."""
    if isinstance(store, MemoryLimitStore):
        del store._counters[check.key]
        return
    await store.client.execute("DEL", *check.storage_keys)


async def test_requests_in_flight_when_a_counter_is_lost_are_charged_in_full(store_and_clock) -> None:
    """The seed that replaces a lost counter cannot see requests still running (the ledger has them only once they
    end), so their settlements charge their whole amount, not the difference to a hold the new counter never
    carried; a request admitted after the seed settles as usual. The month ends at the ledger plus every actual."""
    store, _clock, key = store_and_clock

    def quota(amount: int) -> Check:
        return Check("monthly_tokens", "tenant", Kind.COUNTER, key("month"), 10_000, amount, 40 * DAY_MS)

    await store.seed(quota(0), 0)
    assert (await store.admit([quota(80)], "")).admitted  # in flight: holds 80
    await _lose(store, quota(0))
    assert await store.seed(quota(0), 1_000) is True  # the ledger: 1,000 used this month, the request not yet
    assert (await store.admit([quota(50)], "")).admitted  # admitted after the seed: holds 50
    await store.settle(Settlement(counter_deltas=[(quota(80), 30 - 80, 80)]))  # the first used 30
    await store.settle(Settlement(counter_deltas=[(quota(50), 40 - 50, 50)]))  # the second used 40
    peek = (await store.admit([quota(0)], "", dry=True)).states[0]
    assert (peek.used, peek.reserved) == (1_000 + 30 + 40, 0)


async def test_a_seed_carries_what_batches_hold_and_their_release_gives_it_back(store_and_clock) -> None:
    store, _clock, key = store_and_clock
    budget = Check("monthly_budget", "tenant", Kind.COUNTER, key("spend"), 10_000, 0, 40 * DAY_MS)
    assert await store.seed(budget, 700 + 200, 200) is True  # 700 spent, 200 held by a batch still running
    peek = (await store.admit([budget], "", dry=True)).states[0]
    assert (peek.used, peek.reserved) == (900, 200)
    await store.settle(Settlement(counter_deltas=[(budget, -200, 200), (budget, 150, 0)]))  # it ended: spent 150
    peek = (await store.admit([budget], "", dry=True)).states[0]
    assert (peek.used, peek.reserved) == (850, 0)


async def test_a_counter_seeded_before_the_limits_changed_is_seeded_again(store_and_clock) -> None:
    """While a tenant had no budget its spend reached no counter: once its limits change (a newer version), the
    counter it left behind is not trusted but seeded from the ledger again; a process that still has the older
    limits uses the newer counter as it is (no seeding back and forth)."""
    store, _clock, key = store_and_clock

    def budget(amount: int, version: int) -> Check:
        return Check("monthly_budget", "tenant", Kind.COUNTER, key("nusd"), 10_000, amount, 40 * DAY_MS, version)

    assert await store.seed(budget(0, 1), 300) is True
    assert (await store.admit([budget(100, 1)], "")).admitted
    stale = await store.admit([budget(100, 2)], "")
    assert not stale.admitted and stale.states[0].retry_ms == SEED
    assert await store.seed(budget(0, 2), 900) is True  # the ledger: 900, with what was spent without a budget
    assert await store.seed(budget(0, 2), 5) is False  # another process seeded it first
    assert (await store.admit([budget(100, 2)], "")).admitted
    older = await store.admit([budget(0, 1)], "", dry=True)
    assert older.states[0].passed and older.states[0].used == 1_000
    await store.settle(Settlement(counter_deltas=[(budget(0, 0), -100, 100)]))  # settled without a version
    peek = (await store.admit([budget(0, 2)], "", dry=True)).states[0]
    assert (peek.used, peek.retry_ms) == (900, 0)


async def test_concurrent_admissions_never_exceed_the_limit(store_and_clock) -> None:
    store, _clock, key = store_and_clock
    check = rpm(key("rpm"), 20)
    verdicts = await asyncio.gather(*(store.admit([check], "") for _ in range(60)))
    assert sum(v.admitted for v in verdicts) == 20


async def test_redis_store_uses_the_server_clock_without_an_injected_one(redis_url: str, redis_prefix: str) -> None:
    client = Redis.from_url(redis_url)
    store = RedisLimitStore(RespClient.from_url(redis_url))
    try:
        check = rpm(f"{redis_prefix}:{{t}}:rpm", 1)
        first = await store.admit([check], "")
        second = await store.admit([check], "")
        server_ms = (await client.time())[0] * 1000
        assert first.admitted and not second.admitted
        assert abs(first.now_ms - server_ms) < 5_000
        assert 59_000 < second.states[0].retry_ms <= 61_000
        assert await client.pttl(f"{redis_prefix}:{{t}}:rpm") > 0  # state expires by itself
    finally:
        await client.delete(f"{redis_prefix}:{{t}}:rpm", f"{redis_prefix}:{{t}}:rpm:z")
        await client.aclose()
        await store.close()
        await store.client.aclose()


async def test_background_settlements_share_round_trips_and_all_apply(redis_url: str, redis_prefix: str) -> None:
    from tenantgate.tenants.limits.guard import GuardedStore

    client = Redis.from_url(redis_url)
    resp = RespClient.from_url(redis_url)
    store = RedisLimitStore(resp)
    guard = GuardedStore(store, MemoryLimitStore(), fail_open=False, retry_seconds=1.0)
    slot = Check("concurrency", "key", Kind.CONCURRENCY, f"{redis_prefix}:{{t}}:inflight", 100, 1, 30_000)
    try:
        leases = [f"lease-{i}" for i in range(50)]
        for lease in leases:
            assert (await store.admit([slot], lease)).admitted
        writes_before = resp.write_count
        for lease in leases:
            guard.settle_soon(Settlement(lease=lease, release=[slot]), store)
        await guard.drain()
        assert resp.write_count - writes_before < 5  # every release applied, sharing a few writes
        peek = await store.admit([slot], "probe", dry=True)
        assert peek.states[0].used == 0
        assert guard.stats.settle_errors == 0
    finally:
        await client.delete(f"{redis_prefix}:{{t}}:inflight")
        await client.aclose()
        await store.close()
        await store.client.aclose()


async def test_settlements_survive_a_script_flush_and_failures_are_counted(
    own_redis_url: str, redis_prefix: str
) -> None:
    from tenantgate.tenants.limits.guard import GuardedStore

    redis_url = own_redis_url

    client = Redis.from_url(redis_url)
    store = RedisLimitStore(RespClient.from_url(redis_url))
    guard = GuardedStore(store, MemoryLimitStore(), fail_open=False, retry_seconds=1.0)
    slot = Check("concurrency", "key", Kind.CONCURRENCY, f"{redis_prefix}:{{t}}:inflight", 100, 1, 30_000)
    try:
        assert (await store.admit([slot], "lease-1")).admitted
        await client.script_flush()  # the settle script is gone too: the release must load it and apply
        guard.settle_soon(Settlement(lease="lease-1", release=[slot]), store)
        await guard.drain()
        assert (await store.admit([slot], "probe", dry=True)).states[0].used == 0
        await store.close()
        await store.client.aclose()
        store.client.endpoint = Endpoint.parse("redis://127.0.0.1:1")  # Redis gone: the next settlement fails
        guard.settle_soon(Settlement(lease="lease-2", release=[slot]), store)
        await guard.drain()
        assert guard.stats.settle_errors == 1
    finally:
        await client.delete(f"{redis_prefix}:{{t}}:inflight")
        await client.aclose()
        await store.close()
        await store.client.aclose()


async def test_concurrent_admissions_share_round_trips_and_survive_a_script_flush(
    own_redis_url: str, redis_prefix: str
) -> None:
    redis_url = own_redis_url
    client = Redis.from_url(redis_url)
    resp = RespClient.from_url(redis_url)
    store = RedisLimitStore(resp)
    check = rpm(f"{redis_prefix}:{{t}}:rpm", 25)
    try:
        await client.script_flush()  # Redis forgot the script: the calls must load it and go on
        verdicts = await asyncio.gather(*(store.admit([check], "") for _ in range(40)))
        assert sum(v.admitted for v in verdicts) == 25
        # 40 admissions, a NOSCRIPT round, one SCRIPT LOAD and the retries: a handful of writes, not 80+.
        assert resp.write_count < 10
    finally:
        await client.delete(f"{redis_prefix}:{{t}}:rpm", f"{redis_prefix}:{{t}}:rpm:z")
        await client.aclose()
        await store.close()
        await store.client.aclose()


async def test_a_changed_limit_applies_to_the_next_check(store_and_clock) -> None:
    """The Redis store encodes a check's key, kind, limit and window once: a new limit must not reuse them."""
    store, _clock, key = store_and_clock
    for _ in range(2):
        assert (await store.admit([rpm(key("rpm"), 2)], "")).admitted
    assert not (await store.admit([rpm(key("rpm"), 2)], "")).admitted
    raised = await store.admit([rpm(key("rpm"), 3)], "")
    assert raised.admitted and raised.states[0].check.limit == 3 and raised.states[0].remaining == 0
