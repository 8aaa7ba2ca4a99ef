"""The fair queue's order under scripted arrivals, its invariants under generated ones, and the slots around it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantgate.core.exchange import Exchange
from tenantgate.core.principal import Limits, Principal
from tenantgate.platform.context import RequestContext
from tenantgate.platform.proxy.http import ClientDisconnected
from tenantgate.platform.workslots import FairQueue, TenantQueueFull, WorkerBusy, WorkSlots

BASE = Principal("key_a1", "tg-x", "k", "ten_a", "a", True, None, Limits(), Limits(), None)


def _drain(queue: FairQueue[str]) -> list[str]:
    out = []
    while (item := queue.pop()) is not None:
        out.append(item)
    return out


def test_a_tenant_that_starts_waiting_beside_a_flood_is_served_next() -> None:
    queue: FairQueue[str] = FairQueue(per_tenant=100)
    for n in range(1, 6):
        assert queue.push("flood", "k", 1, f"f{n}")
    assert queue.pop() == "f1"
    queue.push("quiet", "q", 1, "q1")
    assert queue.pop() == "q1"  # not after f2..f5
    assert _drain(queue) == ["f2", "f3", "f4", "f5"]


def test_tenants_take_turns_of_their_weight() -> None:
    queue: FairQueue[str] = FairQueue(per_tenant=100)
    for n in range(6):
        queue.push("heavy", "k", 3, f"h{n}")
        queue.push("light", "k", 1, f"l{n}")
    assert _drain(queue) == ["h0", "h1", "h2", "l0", "h3", "h4", "h5", "l1", "l2", "l3", "l4", "l5"]


def test_keys_of_one_tenant_take_turns() -> None:
    queue: FairQueue[str] = FairQueue(per_tenant=100)
    for item in ("x1", "x2", "x3"):
        queue.push("t", "busy_key", 1, item)
    queue.push("t", "other_key", 1, "y1")
    assert _drain(queue) == ["x1", "y1", "x2", "x3"]


def test_a_full_tenant_queue_refuses_and_other_tenants_still_queue() -> None:
    queue: FairQueue[str] = FairQueue(per_tenant=2)
    assert queue.push("a", "k", 1, "a1") and queue.push("a", "k2", 1, "a2")
    assert not queue.push("a", "k3", 1, "a3")
    assert queue.push("b", "k", 1, "b1")
    assert queue.size == 3 and queue.waiting("a") == 2
    assert _drain(queue) == ["a1", "b1", "a2"]


def test_removed_items_are_never_granted_and_an_emptied_tenant_leaves_the_round() -> None:
    queue: FairQueue[str] = FairQueue(per_tenant=10)
    queue.push("a", "k", 1, "a1")
    queue.push("a", "k", 1, "a2")
    queue.push("b", "k", 1, "b1")
    assert queue.remove("a", "k", "a1") and queue.remove("a", "k", "a2")
    assert not queue.remove("a", "k", "a2")
    assert queue.waiting("a") == 0
    assert _drain(queue) == ["b1"]
    assert queue.size == 0


Script = tuple[dict[str, int], int, list[tuple[str, int, int]]]


@st.composite
def _script(draw: st.DrawFn) -> Script:
    weights = {t: draw(st.integers(1, 4)) for t in ("t0", "t1", "t2", "t3")}
    bound = draw(st.integers(1, 6))
    ops = draw(
        st.lists(
            st.tuples(st.sampled_from(["push", "push", "pop", "remove"]), st.integers(0, 3), st.integers(0, 2)),
            max_size=120,
        )
    )
    return weights, bound, ops


@settings(max_examples=300, deadline=None)
@given(_script())
def test_generated_arrivals_keep_every_invariant(script: Script) -> None:
    weights, bound, ops = script
    queue: FairQueue[tuple[str, str, int]] = FairQueue(per_tenant=bound)
    waiting: dict[tuple[str, str, int], None] = {}  # in arrival order
    # Grants to each other tenant since a waiting tenant's last grant (or since it started waiting).
    passed_over: dict[str, Counter[str]] = {}
    # Grants to other keys of the same tenant since a waiting key's last grant (or since it started waiting).
    key_passed_over: dict[tuple[str, str], Counter[str]] = {}
    granted, removed, serial = [], [], 0
    for op, t, k in ops:
        tenant, key = f"t{t}", f"k{k}"
        if op == "push":
            serial += 1
            item = (tenant, key, serial)
            before = queue.waiting(tenant)
            accepted = queue.push(tenant, key, weights[tenant], item)
            assert accepted == (before < bound)  # refused exactly when full
            if accepted:
                waiting[item] = None
                passed_over.setdefault(tenant, Counter())
                key_passed_over.setdefault((tenant, key), Counter())
        elif op == "pop":
            item = queue.pop()
            if item is None:
                assert not waiting
                continue
            assert item in waiting
            # Within a key, first in first out.
            assert item == next(w for w in waiting if w[:2] == item[:2])
            del waiting[item]
            granted.append(item)
            g_tenant, g_key, _ = item
            passed_over[g_tenant] = Counter()
            key_passed_over[(g_tenant, g_key)] = Counter()
            for other, counts in passed_over.items():
                if other != g_tenant:
                    counts[g_tenant] += 1
                    assert counts[g_tenant] <= weights[g_tenant], (other, g_tenant, counts)
            for (other_tenant, other_key), counts in key_passed_over.items():
                if other_tenant == g_tenant and other_key != g_key:
                    counts[g_key] += 1
                    assert counts[g_key] <= 1
        else:
            mine = [w for w in waiting if w[0] == tenant]
            if mine:
                item = mine[k % len(mine)]
                assert queue.remove(item[0], item[1], item)
                del waiting[item]
                removed.append(item)
        # Tenants and keys that wait no more start afresh.
        for name in list(passed_over):
            if queue.waiting(name) == 0:
                del passed_over[name]
        live_keys = {w[:2] for w in waiting}
        for pair in list(key_passed_over):
            if pair not in live_keys:
                del key_passed_over[pair]
        assert queue.size == len(waiting)
        assert all(queue.waiting(f"t{n}") <= bound for n in range(4))
    rest = []
    while (item := queue.pop()) is not None:
        rest.append(item)
    assert sorted(rest) == sorted(waiting)  # nothing lost
    assert len(set(granted + removed + rest)) == len(granted) + len(removed) + len(rest)  # nothing twice


async def _ticks() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _exchange(tenant: str, key: str, weight: int = 1) -> Exchange:
    principal = dataclasses.replace(BASE, tenant_id=tenant, key_id=key, tenant_name=tenant, fair_share_weight=weight)
    return Exchange(ctx=RequestContext("req", principal), operation="chat", path="/v1/chat/completions")


async def test_a_free_slot_is_taken_at_once_and_a_released_slot_passes_to_the_next_waiter_in_fair_order() -> None:
    slots = WorkSlots(slots=1, queue_per_tenant=10, wait_seconds=5)
    holder = _exchange("flood", "f")
    await slots.acquire(holder)
    assert holder.holds_slot and slots.in_use == 1
    flood = [_exchange("flood", "f") for _ in range(3)]
    served: list[Exchange] = []

    async def take(exchange: Exchange) -> None:
        await slots.acquire(exchange)
        served.append(exchange)

    tasks = [asyncio.create_task(take(e)) for e in flood]
    await _ticks()
    slots.release(holder)  # the flood's first waiter: its turn has begun
    await _ticks()
    quiet = _exchange("quiet", "q")
    tasks.append(asyncio.create_task(take(quiet)))
    await _ticks()
    assert slots.waiting() == 3
    slots.release(served[0])
    await _ticks()
    assert served[1] is quiet
    assert slots.in_use == 1  # handed over, never freed in between
    slots.release(holder)  # a second release of the same exchange is harmless
    assert slots.in_use == 1
    for exchange in (quiet, flood[1], flood[2]):
        slots.release(exchange)
        await _ticks()
    await asyncio.gather(*tasks)
    assert served == [flood[0], quiet, flood[1], flood[2]]
    assert slots.in_use == 0 and slots.waiting() == 0


async def test_a_full_tenant_queue_is_a_429_with_retry_after_and_a_long_wait_a_503() -> None:
    slots = WorkSlots(slots=1, queue_per_tenant=1, wait_seconds=0.05)
    await slots.acquire(_exchange("a", "k"))
    waiting = asyncio.create_task(slots.acquire(_exchange("b", "k")))
    await _ticks()
    refused = _exchange("b", "k2")
    with pytest.raises(TenantQueueFull) as full:
        await slots.acquire(refused)
    assert full.value.status == 429 and full.value.headers["retry-after"] == "1"
    assert refused.refused_by == "tenant_queue" and not refused.holds_slot
    with pytest.raises(WorkerBusy) as busy:
        await waiting
    assert busy.value.status == 503 and busy.value.headers["retry-after"] == "1"
    assert slots.waiting() == 0 and slots.in_use == 1
    assert slots.stats.queue_full == 1 and slots.stats.timed_out == 1


async def test_a_waiting_client_that_disconnects_leaves_the_queue() -> None:
    slots = WorkSlots(slots=1, queue_per_tenant=10, wait_seconds=5)
    holder = _exchange("a", "k")
    await slots.acquire(holder)
    gone = asyncio.Event()

    async def receive() -> dict[str, object]:
        await gone.wait()
        return {"type": "http.disconnect"}

    leaver = _exchange("b", "k")
    leaving = asyncio.create_task(slots.acquire(leaver, receive))
    stayer = _exchange("c", "k")
    staying = asyncio.create_task(slots.acquire(stayer))
    await _ticks()
    assert slots.waiting() == 2
    gone.set()
    with pytest.raises(ClientDisconnected):
        await leaving
    assert slots.waiting() == 1 and not leaver.holds_slot
    slots.release(holder)
    await staying
    assert stayer.holds_slot and slots.in_use == 1


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    slots = WorkSlots(slots=1, queue_per_tenant=10, wait_seconds=5)
    holder = _exchange("a", "k")
    await slots.acquire(holder)
    task = asyncio.create_task(slots.acquire(_exchange("b", "k")))
    await _ticks()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slots.waiting() == 0
    slots.release(holder)
    assert slots.in_use == 0


async def test_a_slot_held_past_pass_on_seconds_goes_to_whoever_needs_it_and_its_holders_release_is_harmless() -> None:
    slots = WorkSlots(slots=1, queue_per_tenant=10, wait_seconds=5, pass_on_seconds=0.05)
    slow = _exchange("a", "k")
    assert slots.take(slow)
    assert not slots.take(_exchange("b", "k"))  # held for less than pass_on_seconds
    await asyncio.sleep(0.06)
    arriving = _exchange("b", "k")
    assert slots.take(arriving)  # nobody waits: the newcomer takes the slot over directly
    assert arriving.holds_slot and not slow.holds_slot and slots.in_use == 1
    waiter = _exchange("c", "k")
    waiting = asyncio.create_task(slots.acquire(waiter))
    await _ticks()
    assert slots.waiting() == 1
    await asyncio.wait_for(waiting, timeout=1)  # the sweep passes the slot on after pass_on_seconds
    assert waiter.holds_slot and not arriving.holds_slot and slots.in_use == 1
    for exchange in (slow, arriving):
        slots.release(exchange)  # released when their answers finally begin: nothing to give back
    assert slots.in_use == 1
    slots.release(waiter)
    assert slots.in_use == 0 and slots.stats.passed_on == 2


async def test_waits_shorter_than_a_tick_never_start_a_disconnect_watch() -> None:
    slots = WorkSlots(slots=1, queue_per_tenant=10, wait_seconds=5)
    holder = _exchange("a", "k")
    await slots.acquire(holder)
    listened: list[bool] = []

    async def receive() -> dict[str, object]:
        listened.append(True)
        await asyncio.sleep(10)
        return {"type": "http.disconnect"}

    waiter = _exchange("b", "k")
    waiting = asyncio.create_task(slots.acquire(waiter, receive))
    await _ticks()
    slots.release(holder)
    await waiting
    assert waiter.holds_slot and listened == []


async def test_while_another_tenant_asks_the_worker_runs_at_its_shared_capacity_and_alone_again_at_full() -> None:
    slots = WorkSlots(slots=4, queue_per_tenant=10, wait_seconds=5, shared=1)
    flood = [_exchange("flood", "f") for _ in range(4)]
    assert all(slots.take(e) for e in flood)  # alone on the worker: every slot
    quiet = _exchange("quiet", "q")
    waiting = asyncio.create_task(slots.acquire(quiet))
    await _ticks()
    for exchange in flood[:3]:
        slots.release(exchange)  # shared now: the flood's slots are not handed on while one is still held
        assert not quiet.holds_slot
    slots.release(flood[3])
    await waiting
    assert quiet.holds_slot and slots.in_use == 1
    again = _exchange("flood", "f")
    assert not slots.take(again)  # the quiet tenant's request is the one the worker works on
    slots.release(quiet)
    await asyncio.sleep(WorkSlots.CONTENDED_SECONDS + 0.01)
    alone = [_exchange("flood", "f") for _ in range(4)]
    assert all(slots.take(e) for e in alone)  # nobody else asked for a while: full capacity again
    assert slots.in_use == 4


async def test_a_slot_waiting_on_its_upstream_passes_on_soon_and_a_working_one_keeps_it() -> None:
    slots = WorkSlots(slots=2, queue_per_tenant=10, wait_seconds=5, pass_on_seconds=0.01, busy_pass_on_seconds=10)
    working, sent = _exchange("a", "k"), _exchange("a", "k")
    assert slots.take(working) and slots.take(sent)
    slots.park(sent)  # its request went to the upstream
    waiter = _exchange("a", "k")
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(slots.acquire(waiter), timeout=1)
    assert asyncio.get_running_loop().time() - started < 0.5
    assert waiter.holds_slot and not sent.holds_slot and working.holds_slot
    slots.park(working)
    slots.unpark(working)  # its wait on Redis is over: working again, it keeps its slot
    late = asyncio.create_task(slots.acquire(_exchange("a", "k")))
    await asyncio.sleep(0.05)
    assert not late.done() and working.holds_slot
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late


async def test_a_waiter_cancelled_just_before_its_grant_is_skipped_and_the_slot_goes_to_the_next() -> None:
    slots = WorkSlots(slots=1, queue_per_tenant=10, wait_seconds=5)
    holder = _exchange("a", "k")
    await slots.acquire(holder)
    first, second = _exchange("b", "k"), _exchange("c", "k")
    cancelled = asyncio.create_task(slots.acquire(first))
    staying = asyncio.create_task(slots.acquire(second))
    await _ticks()
    cancelled.cancel()  # its future is cancelled at once; the task leaves the queue only when it next runs
    slots.release(holder)
    await staying
    assert second.holds_slot and not first.holds_slot and slots.in_use == 1
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert slots.waiting() == 0


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["arrive", "release", "park", "cancel", "tick", "sleep"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(min_value=0, max_value=7),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops=_OPS, slots_n=st.integers(min_value=1, max_value=3), shared=st.integers(min_value=1, max_value=3))
def test_generated_arrivals_releases_parks_and_cancels_never_lose_or_leak_a_slot(
    ops: list[tuple[str, str, int]], slots_n: int, shared: int
) -> None:
    """Whatever the order of arrivals, releases, parked I/O waits and hang-ups across three tenants: the slots in
    use are exactly the exchanges that hold one, never more than the worker has, and once every holder is done
    every waiter has been served and nothing is held."""

    async def scenario() -> None:
        slots = WorkSlots(slots_n, queue_per_tenant=100, wait_seconds=30, pass_on_seconds=0.002, shared=shared)
        exchanges: list[Exchange] = []
        tasks: dict[int, asyncio.Task[None]] = {}

        def check() -> None:
            assert slots.in_use == sum(e.holds_slot for e in exchanges)
            assert slots.in_use <= slots_n

        for op, tenant, index in ops:
            if op == "arrive":
                exchange = _exchange(tenant, f"{tenant}-key")
                exchanges.append(exchange)
                tasks[len(exchanges) - 1] = asyncio.create_task(slots.acquire(exchange))
            elif exchanges:
                # Releases and parks mostly of holders, hang-ups of waiters: the states where order matters.
                holders = [e for e in exchanges if e.holds_slot] or exchanges
                pending = [i for i, task in tasks.items() if not task.done()]
                if op == "release":
                    slots.release(holders[index % len(holders)])
                elif op == "park":
                    slots.park(holders[index % len(holders)])
                elif op == "cancel" and pending:
                    tasks[pending[index % len(pending)]].cancel()  # it leaves the queue only when it next runs
                elif op == "tick":
                    await _ticks()
                elif op == "sleep":
                    await asyncio.sleep(0.003)
            check()
        for _ in range(100):  # every holder is done in turn: each waiter gets its slot and is done too
            for exchange in exchanges:
                slots.release(exchange)
            await _ticks()
            if all(task.done() for task in tasks.values()) and not slots.in_use:
                break
        assert all(task.done() for task in tasks.values())
        assert slots.in_use == 0 and slots.waiting() == 0
        check()

    asyncio.run(scenario())
