"""Fair share of one worker between tenants: a fixed number of work slots, and a fair queue when they are all held.

Requests are served first come, first served by the event loop, so one tenant with 64 connections gets 64/65 of a
worker and a tenant with one gets 1/65. Here every admitted model request (past the limiter, before the upstream)
takes one of ``TENANTGATE_WORK_SLOTS`` slots. While a slot is free that is one counter compare and one increment:
nothing is allocated and nothing queues. When every slot is held, the request waits in its tenant's queue, and each
slot that frees is handed to the next waiter in weighted deficit round-robin order: tenants take turns, a turn
grants up to the tenant's weight (``fair_share_weight`` of its plan) requests, and within a tenant its keys take
turns one request each. A tenant that starts waiting joins the end of the round, and a tenant whose turn is used up
yields at the next grant, so a tenant with one request waiting beside a flood of weight w waits for at most w of
the flood's grants, not for the flood's queue.

Bounds: a tenant holds at most ``TENANTGATE_WORK_QUEUE_PER_TENANT`` waiting requests (beyond that: 429 with
``retry-after``), a request waits at most ``TENANTGATE_WORK_QUEUE_TIMEOUT_SECONDS`` (then 503 with ``retry-after``),
and a waiting client that disconnects leaves the queue within two ticks (at most 0.1 s).

Streams: a slot is held from admission until the upstream's answer begins (the response head of a JSON answer, the
first event of a stream), not while a stream is relayed. Slots share out the work of obtaining answers - admission,
the upstream call and its retries, the pool connection - which is what a flood competes for; relaying a stream is
paced by the upstream, costs little per byte, and may last minutes, so holding slots for it would turn them into a
cap on open streams. A non-streamed answer's head arrives when the upstream is done, so it holds its slot for its
whole upstream time.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.types import Receive

from tenantgate.core.exchange import Exchange
from tenantgate.platform.errors import GatewayError, ServiceUnavailable
from tenantgate.platform.proxy.http import ClientDisconnected

T = TypeVar("T")


class _TenantQueue(Generic[T]):
    __slots__ = ("credit", "keys", "name", "size", "weight")

    def __init__(self, name: str, weight: int) -> None:
        self.name = name
        self.weight = weight
        self.credit = weight
        """Grants left in the tenant's current turn."""
        self.keys: dict[str, deque[T]] = {}
        """Waiting items by key, in the keys' turn order (a dict keeps insertion order)."""
        self.size = 0


class FairQueue(Generic[T]):
    """Waiting items by tenant, then by key, taken in weighted deficit round-robin order; no I/O, no clock.

    The head of ``_ring`` has the current turn. Its turn ends lazily: when a grant finds it without credit, it
    moves to the end of the ring with fresh credit, so a tenant that joined meanwhile is served before it."""

    def __init__(self, per_tenant: int) -> None:
        self.per_tenant = per_tenant
        self._tenants: dict[str, _TenantQueue[T]] = {}
        self._ring: deque[_TenantQueue[T]] = deque()
        self.size = 0

    def push(self, tenant: str, key: str, weight: int, item: T) -> bool:
        """Queue ``item``; False (nothing queued) when the tenant already has ``per_tenant`` items waiting."""
        queue = self._tenants.get(tenant)
        if queue is None:
            if self.per_tenant < 1:
                return False
            queue = self._tenants[tenant] = _TenantQueue(tenant, max(1, weight))
            self._ring.append(queue)
        elif queue.size >= self.per_tenant:
            return False
        else:
            queue.weight = max(1, weight)  # takes effect from its next turn
        items = queue.keys.get(key)
        if items is None:
            items = queue.keys[key] = deque()
        items.append(item)
        queue.size += 1
        self.size += 1
        return True

    def pop(self) -> T | None:
        """The next item in fair order, or None when nothing waits."""
        ring = self._ring
        while ring:
            queue = ring[0]
            if queue.credit <= 0:
                ring.rotate(-1)
                queue.credit = queue.weight
                continue
            key = next(iter(queue.keys))
            items = queue.keys.pop(key)
            item = items.popleft()
            if items:
                queue.keys[key] = items  # the key's turn is over: to the end of the tenant's keys
            queue.credit -= 1
            queue.size -= 1
            self.size -= 1
            if not queue.size:
                ring.popleft()
                del self._tenants[queue.name]
            return item
        return None

    def remove(self, tenant: str, key: str, item: T) -> bool:
        """Take a waiting item out (its client left); False if it is not waiting."""
        queue = self._tenants.get(tenant)
        items = queue.keys.get(key) if queue is not None else None
        if queue is None or items is None:
            return False
        try:
            items.remove(item)
        except ValueError:
            return False
        if not items:
            del queue.keys[key]
        queue.size -= 1
        self.size -= 1
        if not queue.size:
            self._ring.remove(queue)
            del self._tenants[tenant]
        return True

    def waiting(self, tenant: str) -> int:
        queue = self._tenants.get(tenant)
        return queue.size if queue is not None else 0


class TenantQueueFull(GatewayError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class WorkerBusy(ServiceUnavailable):
    code = "worker_busy"


@dataclass(slots=True)
class SlotStats:
    granted_after_wait: int = 0
    wait_seconds: float = 0.0
    queue_full: int = 0
    timed_out: int = 0
    left_queue: int = 0
    """Waiting clients that disconnected."""
    passed_on: int = 0
    """Slots passed on by requests still waiting for their upstream after ``pass_on_seconds``."""


class _Waiter:
    __slots__ = ("exchange", "future", "receive", "since", "watch")

    def __init__(self, exchange: Exchange, future: asyncio.Future[None], receive: Receive | None, since: float) -> None:
        self.exchange = exchange
        self.future = future
        self.receive = receive
        self.since = since
        self.watch: asyncio.Future[Any] | None = None


class WorkSlots:
    """The slots of one worker. ``acquire`` before the upstream call, ``release`` when the answer begins (and in any
    case when the exchange ends: releasing twice is harmless). ``exchange.holds_slot`` says whether it holds one.

    Nothing here costs a timer or a task per request. While anyone waits, one sweep per ``tick`` seconds does the
    timed work: it passes on the slots of requests that have waited ``pass_on_seconds`` for their upstream, refuses
    waiters past ``wait_seconds``, and starts watching for a disconnect only for waiters that have waited a tick
    (most waits, behind a fast upstream, are over in a millisecond or two and never need a watch)."""

    def __init__(
        self, slots: int, queue_per_tenant: int, wait_seconds: float, pass_on_seconds: float = float("inf")
    ) -> None:
        self.slots = slots
        self.in_use = 0
        self.wait_seconds = wait_seconds
        self.pass_on_seconds = pass_on_seconds
        self.tick = min(max(min(pass_on_seconds, wait_seconds) / 2, 0.005), 0.05)
        self.queue: FairQueue[_Waiter] = FairQueue(queue_per_tenant)
        self.stats = SlotStats()
        self._held: dict[Exchange, float] = {}
        """Exchanges holding a slot, oldest first, with when they took it."""
        self._waiting: dict[_Waiter, None] = {}
        """Waiters, oldest first."""
        self._sweep_at: asyncio.TimerHandle | None = None

    def take(self, exchange: Exchange) -> bool:
        """Take a free slot, if there is one (the uncontended path: no coroutine, no allocation)."""
        if self.in_use < self.slots:
            self.in_use += 1
            exchange.holds_slot = True
            self._held[exchange] = time.monotonic()
            return True
        if self.queue.size:
            return False  # the waiters come first
        held = self._held
        for oldest, since in held.items():
            if time.monotonic() - since < self.pass_on_seconds:
                return False
            # The oldest holder has waited for its upstream long enough: its slot passes to this request.
            del held[oldest]
            oldest.holds_slot = False
            self.stats.passed_on += 1
            exchange.holds_slot = True
            held[exchange] = time.monotonic()
            return True
        return False

    async def acquire(self, exchange: Exchange, receive: Receive | None = None) -> None:
        """Take a slot, waiting for one in fair order when all are held. ``receive``: the request's, once its body
        has been read whole, to notice a client that disconnects while it waits."""
        if not self.take(exchange):
            await self.wait(exchange, receive)

    def release(self, exchange: Exchange) -> None:
        if not exchange.holds_slot:
            return
        exchange.holds_slot = False
        self._held.pop(exchange, None)
        queue = self.queue
        if not queue.size:
            self.in_use -= 1
            return
        waiter = queue.pop()
        if waiter is None:
            self.in_use -= 1
        else:
            self._grant(waiter)  # the slot passes to the waiter: in_use stays as it is

    def _grant(self, waiter: _Waiter) -> None:
        del self._waiting[waiter]
        exchange = waiter.exchange
        exchange.holds_slot = True
        self._held[exchange] = now = time.monotonic()
        self.stats.granted_after_wait += 1
        self.stats.wait_seconds += now - waiter.since
        if waiter.watch is not None:
            waiter.watch.cancel()
        waiter.future.set_result(None)

    async def wait(self, exchange: Exchange, receive: Receive | None = None) -> None:
        """Wait for a slot in fair order (``take`` found none)."""
        principal = exchange.ctx.principal
        loop = asyncio.get_running_loop()
        waiter = _Waiter(exchange, loop.create_future(), receive, time.monotonic())
        if not self.queue.push(principal.tenant_id, principal.key_id, principal.fair_share_weight, waiter):
            self.stats.queue_full += 1
            exchange.refused_by = "tenant_queue"
            raise TenantQueueFull(
                f"Too many requests of tenant {principal.tenant_name} ({principal.tenant_id}) are waiting for this "
                f"gateway worker ({self.queue.per_tenant} at most). Please try again in 1s.",
                headers={"retry-after": "1", "retry-after-ms": "1000"},
            )
        self._waiting[waiter] = None
        if self._sweep_at is None:
            self._sweep_at = loop.call_later(self.tick, self._sweep)
        try:
            await waiter.future
        except asyncio.CancelledError:
            self._leave(waiter)
            raise

    def _leave(self, waiter: _Waiter) -> None:
        """The waiting coroutine was cancelled: out of the queue, or, if the slot was granted meanwhile, pass it on."""
        exchange = waiter.exchange
        principal = exchange.ctx.principal
        if self.queue.remove(principal.tenant_id, principal.key_id, waiter):
            self._drop(waiter)
            waiter.future.cancel()
        elif exchange.holds_slot:
            self.release(exchange)

    def _drop(self, waiter: _Waiter) -> None:
        self._waiting.pop(waiter, None)
        if waiter.watch is not None:
            waiter.watch.cancel()

    def _refuse(self, waiter: _Waiter, error: BaseException) -> None:
        principal = waiter.exchange.ctx.principal
        if self.queue.remove(principal.tenant_id, principal.key_id, waiter):
            self._drop(waiter)
            waiter.future.set_exception(error)

    def _sweep(self) -> None:
        self._sweep_at = None
        now = time.monotonic()
        held = self._held
        while self.queue.size and held:
            oldest, since = next(iter(held.items()))
            if now - since < self.pass_on_seconds:
                break
            self.stats.passed_on += 1
            self.release(oldest)
        for waiter in list(self._waiting):
            waited = now - waiter.since
            if waited < self.tick:
                break  # the rest are younger
            if waited >= self.wait_seconds:
                self.stats.timed_out += 1
                waiter.exchange.refused_by = "worker_busy"
                self._refuse(
                    waiter,
                    WorkerBusy(
                        f"This gateway worker is busy: no work slot freed within {self.wait_seconds:g}s. "
                        "Please try again.",
                        headers={"retry-after": "1"},
                    ),
                )
            elif waiter.watch is None and waiter.receive is not None:
                watch = waiter.watch = asyncio.ensure_future(waiter.receive())
                watch.add_done_callback(functools.partial(self._watched, waiter))
        if self.queue.size:
            self._sweep_at = asyncio.get_running_loop().call_later(self.tick, self._sweep)

    def _watched(self, waiter: _Waiter, watch: asyncio.Future[Any]) -> None:
        if waiter.future.done() or not _gone(watch):
            return
        self.stats.left_queue += 1
        self._refuse(waiter, ClientDisconnected())

    def waiting(self) -> int:
        return self.queue.size


def _gone(watch: asyncio.Future[Any]) -> bool:
    if watch.cancelled() or watch.exception() is not None:
        return True
    message = watch.result()
    return not isinstance(message, dict) or message.get("type") == "http.disconnect"
