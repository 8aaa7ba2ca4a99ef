"""Fair share of one worker between tenants: a fixed number of work slots, and a fair queue when they are all held.

Requests are served first come, first served by the event loop, so one tenant with 64 connections gets 64/65 of a
worker and a tenant with one gets 1/65: every step of the quiet tenant's request waits behind a step of each of the
flood's. Here every model request takes one of the worker's work slots before its body is parsed and holds it
until it has been answered. While a slot is free that is one counter compare and one increment: nothing is
allocated and nothing queues. When none is free, the request waits in its tenant's queue, and each slot that frees
is handed to the next waiter in weighted deficit round-robin order: tenants take turns, a turn grants up to the
tenant's weight (``fair_share_weight`` of its plan) requests, and within a tenant its keys take turns one request
each. A tenant that starts waiting joins the end of the round, and a tenant whose turn is used up yields at the next
grant, so a tenant with one request waiting beside a flood of weight w waits for at most w of the flood's grants.

Capacity: ``TENANTGATE_WORK_SLOTS`` (16) while one tenant is alone on the worker, so a lone tenant's many
connections keep the worker busy; ``TENANTGATE_WORK_SLOTS_SHARED`` (1) from the moment a second tenant's request
comes while the first tenant's are in, until no other tenant has come for ``CONTENDED_SECONDS``. With few requests
in the worker at once, each is done in about its own CPU time, so the quiet tenant's request is answered about as
fast as alone, and the flood gets every turn nobody else takes (``python -m bench.noisy``, docs/performance.md).

What a slot covers is the worker's own work. A request waiting on I/O - the limiter's Redis, its upstream - is
"parked": after ``TENANTGATE_WORK_SLOT_UPSTREAM_SECONDS`` (1 ms) of that its slot passes on to the next waiter and
the request goes on without one, so slow model calls and long streams are never capped by the slots; a request
working (or reading a slow client's body) keeps it for up to 50 ms. The cost: while tenants share a worker and
every upstream is slow, a worker starts at most about ``shared / (1 ms + the request's own CPU and Redis time)``
requests a second (several hundred with one slot); raise ``TENANTGATE_WORK_SLOTS_SHARED`` or add workers if that
binds.

Bounds: a tenant holds at most ``TENANTGATE_WORK_QUEUE_PER_TENANT`` waiting requests (beyond that: 429 with
``retry-after``), a request waits at most ``TENANTGATE_WORK_QUEUE_TIMEOUT_SECONDS`` (then 503 with ``retry-after``),
and a waiting client that disconnects leaves the queue within about 0.1 s.
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
    """The slots of one worker. ``take`` (or ``wait``) before the request's body is parsed, ``park`` while it waits
    on Redis or its upstream, ``release`` when it has been answered (releasing twice is harmless).
    ``exchange.holds_slot`` says whether it holds one.

    Capacity: ``slots`` while one tenant is alone on the worker, ``shared`` once another tenant's request came while
    the first one's were in, until none has for ``CONTENDED_SECONDS``: the fewer requests the event loop works on at
    once, the sooner each of them is done, so a tenant with one request in flight is not slowed by a flood's many
    (the flood keeps the worker busy with the rest).

    Nothing here costs a timer or a task per request. While anyone waits, one sweep per ``tick`` does the timed work:
    it passes on the slots of requests parked on I/O for ``pass_on_seconds`` (or busy for ``busy_pass_on_seconds``),
    refuses waiters past ``wait_seconds``, and starts watching for a disconnect only for waiters that have waited
    ``WATCH_AFTER_SECONDS``."""

    CONTENDED_SECONDS = 0.25
    WATCH_AFTER_SECONDS = 0.05
    """Most waits are over in a few milliseconds; only a longer one is watched for a disconnect (a task each)."""

    def __init__(
        self,
        slots: int,
        queue_per_tenant: int,
        wait_seconds: float,
        pass_on_seconds: float = float("inf"),
        shared: int | None = None,
        busy_pass_on_seconds: float = 0.05,
    ) -> None:
        self.slots = slots
        self.shared = min(slots, shared) if shared is not None else slots
        self.in_use = 0
        self.wait_seconds = wait_seconds
        self.pass_on_seconds = pass_on_seconds
        self.busy_pass_on_seconds = max(busy_pass_on_seconds, pass_on_seconds)
        self.tick = min(max(min(pass_on_seconds, wait_seconds) / 2, 0.0005), 0.05)
        self._check_after = min(self.WATCH_AFTER_SECONDS, wait_seconds)
        self.queue: FairQueue[_Waiter] = FairQueue(queue_per_tenant)
        self.stats = SlotStats()
        self._held: dict[Exchange, float] = {}
        """Exchanges holding a slot, with when their slot may pass on to someone waiting."""
        self._waiting: dict[_Waiter, None] = {}
        """Waiters, oldest first."""
        self._sweep_at: asyncio.TimerHandle | None = None
        self._last_tenant = ""
        self._switched_at = -1e9
        """When a slot last went to another tenant than the one before."""

    def _capacity(self, now: float) -> int:
        return self.shared if now - self._switched_at < self.CONTENDED_SECONDS else self.slots

    def _hold(self, exchange: Exchange, now: float) -> None:
        exchange.holds_slot = True
        self._held[exchange] = now + self.busy_pass_on_seconds
        tenant = exchange.ctx.principal.tenant_id
        if tenant != self._last_tenant:
            if self.in_use > 1 or self.queue.size:
                self._switched_at = now  # another tenant's requests are in the worker too: it is shared from now
            self._last_tenant = tenant

    def take(self, exchange: Exchange) -> bool:
        """Take a free slot, if there is one (the uncontended path: no coroutine, no allocation)."""
        now = time.monotonic()
        if self.queue.size:
            self._fill(now)
            if self.queue.size:
                return False  # the waiters come first
        tenant = exchange.ctx.principal.tenant_id
        capacity = self.slots
        if now - self._switched_at < self.CONTENDED_SECONDS or (self.in_use and tenant != self._last_tenant):
            capacity = self.shared
        if self.in_use < capacity:
            self.in_use += 1
            self._hold(exchange, now)
            return True
        for holder, until in self._held.items():
            if until <= now:
                # The holder has waited on its upstream (or Redis, or its client) long enough: its slot passes here.
                del self._held[holder]
                holder.holds_slot = False
                self.stats.passed_on += 1
                self._hold(exchange, now)
                return True
        return False

    async def acquire(self, exchange: Exchange, receive: Receive | None = None) -> None:
        """Take a slot, waiting for one in fair order when all are held. ``receive``: the request's, once its body
        has been read whole, to notice a client that disconnects while it waits."""
        if not self.take(exchange):
            await self.wait(exchange, receive)

    def park(self, exchange: Exchange) -> None:
        """The request waits on I/O (the limiter's Redis, its upstream): after ``pass_on_seconds`` of that, its slot
        passes on to anyone waiting, and the request goes on without one."""
        if exchange.holds_slot:
            self._held[exchange] = time.monotonic() + self.pass_on_seconds

    def unpark(self, exchange: Exchange) -> None:
        """The request works again (its I/O wait is over); if it still holds its slot, it keeps it."""
        if exchange.holds_slot:
            self._held[exchange] = time.monotonic() + self.busy_pass_on_seconds

    def release(self, exchange: Exchange) -> None:
        if not exchange.holds_slot:
            return
        exchange.holds_slot = False
        self._held.pop(exchange, None)
        self.in_use -= 1
        if self.queue.size:
            self._fill(time.monotonic())

    def _fill(self, now: float) -> None:
        """Grant free slots to waiters in fair order."""
        capacity = self._capacity(now)
        queue = self.queue
        while self.in_use < capacity and queue.size:
            waiter = queue.pop()
            if waiter is None:
                break
            if waiter.future.done():  # cancelled, its task not yet resumed to leave the queue
                self._drop(waiter)
                continue
            self.in_use += 1
            self._grant(waiter, now)
            capacity = self._capacity(now)

    def _grant(self, waiter: _Waiter, now: float) -> None:
        del self._waiting[waiter]
        self._hold(waiter.exchange, now)
        self.stats.granted_after_wait += 1
        self.stats.wait_seconds += now - waiter.since
        if waiter.watch is not None:
            waiter.watch.cancel()
        waiter.future.set_result(None)

    async def wait(self, exchange: Exchange, receive: Receive | None = None) -> None:
        """Wait for a slot in fair order (``take`` found none)."""
        principal = exchange.ctx.principal
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        waiter = _Waiter(exchange, loop.create_future(), receive, now)
        if not self.queue.push(principal.tenant_id, principal.key_id, principal.fair_share_weight, waiter):
            self.stats.queue_full += 1
            exchange.refused_by = "tenant_queue"
            raise TenantQueueFull(
                f"Too many requests of tenant {principal.tenant_name} ({principal.tenant_id}) are waiting for this "
                f"gateway worker ({self.queue.per_tenant} at most). Please try again in 1s.",
                headers={"retry-after": "1", "retry-after-ms": "1000"},
            )
        if principal.tenant_id != self._last_tenant:
            self._switched_at = now  # another tenant is asking: the worker is shared from now
        self._waiting[waiter] = None
        if self._sweep_at is None:
            self._sweep_at = loop.call_later(self.tick, self._sweep)
        try:
            await waiter.future
        except asyncio.CancelledError:
            self._leave(waiter)
            raise
        finally:
            exchange.waited += time.monotonic() - now  # queued, not worked on (granted, refused or gone)

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
        if self.queue.size:
            expired = [holder for holder, until in self._held.items() if until <= now]
            for holder in expired:
                del self._held[holder]
                holder.holds_slot = False
                self.stats.passed_on += 1
                self.in_use -= 1
            self._fill(now)
        waiting = self._waiting
        if waiting and now - next(iter(waiting)).since >= self._check_after:
            self._check_waiters(now)
        if self.queue.size:
            self._sweep_at = asyncio.get_running_loop().call_later(self.tick, self._sweep)

    def _check_waiters(self, now: float) -> None:
        """Refuse the waiters past ``wait_seconds``; watch those that have waited a while for a disconnect."""
        for waiter in list(self._waiting):
            waited = now - waiter.since
            if waited < self._check_after:
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
