"""Per-process limit storage: the single-process default, and the fallback while Redis is unreachable.

Mirrors ``lua/admit.lua`` and ``lua/settle.lua`` step for step. Every method runs without awaiting anything,
so on one event loop a check-and-charge is as atomic as the Lua script is in Redis.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tenantgate.tenants.limits.checks import (
    CONCURRENCY_RETRY_MS,
    NEVER,
    SEED,
    Check,
    CheckState,
    Kind,
    Settlement,
    Verdict,
)

Clock = Callable[[], float]
"""Milliseconds since the epoch."""


def wall_clock_ms() -> float:
    return time.time() * 1000


@dataclass(slots=True)
class _Window:
    buckets: OrderedDict[int, int] = field(default_factory=OrderedDict)
    total: int = 0
    expires: float = 0.0


@dataclass(slots=True)
class _Counter:
    value: int = 0
    reserved: int = 0
    expires: float = 0.0
    version: int = 0


class MemoryLimitStore:
    name = "memory"

    def __init__(self, clock: Clock = wall_clock_ms, sweep_every: int = 10_000) -> None:
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._counters: dict[str, _Counter] = {}
        self._sweep_every = sweep_every
        self._calls = 0

    async def admit(self, checks: Sequence[Check], lease: str, *, dry: bool = False) -> Verdict:
        return self.admit_now(checks, lease, dry=dry)

    async def settle(self, settlement: Settlement) -> None:
        self.settle_now(settlement)

    async def close(self) -> None:
        return None

    def admit_now(self, checks: Sequence[Check], lease: str, *, dry: bool = False) -> Verdict:
        now = int(self.clock())
        self._calls += 1
        if self._calls % self._sweep_every == 0:
            self._sweep(now)
        found = [self._look(check, now) for check in checks]
        admitted = all(retry == 0 for _, _, retry in found)
        states = []
        for check, (used, reset, retry) in zip(checks, found, strict=True):
            if admitted and not dry and check.amount > 0:
                used, reset = self._charge(check, lease, now, used, reset)
            reserved = 0
            if check.kind is Kind.COUNTER and (counter := self._counters.get(check.key)) is not None:
                reserved = counter.reserved
            states.append(CheckState(check, used, reset, retry, reserved))
        return Verdict(admitted, now, states)

    async def seed(self, check: Check, value: int, reserved: int = 0) -> bool:
        return self.seed_now(check, value, reserved)

    def seed_now(self, check: Check, value: int, reserved: int = 0) -> bool:
        """Set a month counter this store did not hold to the ledger's total (kept if it holds one meanwhile), of
        which ``reserved`` is held (by batches still running); True if this call set it. A counter of an older
        version than the check's is replaced, as one it did not hold."""
        now = int(self.clock())
        counter = self._counters.get(check.key)
        if counter is None or counter.expires <= now or counter.version < check.version:
            self._counters[check.key] = _Counter(max(0, value), max(0, reserved), now + check.period_ms, check.version)
            return True
        return False

    def _look(self, check: Check, now: int) -> tuple[int, int, int]:
        """(used, reset_ms, retry_ms) as the Lua script computes them."""
        if check.kind is Kind.WINDOW:
            window = self._window(check, now)
            retry = 0
            if window.total + check.amount > check.limit:
                retry = NEVER if check.amount > check.limit else self._retry(window, check, now)
            return window.total, self._reset(window, check, now), retry
        if check.kind is Kind.CONCURRENCY:
            leases = self._leases.get(check.key, {})
            for lease_id in [lease_id for lease_id, expires in leases.items() if expires <= now]:
                del leases[lease_id]
            used = len(leases)
            return used, 0, CONCURRENCY_RETRY_MS if used + check.amount > check.limit else 0
        counter = self._counters.get(check.key)
        if counter is None or counter.expires <= now or counter.version < check.version:
            return 0, 0, SEED
        if counter.value + check.amount > check.limit:
            return counter.value, 0, NEVER
        return counter.value, 0, 0

    def _window(self, check: Check, now: int) -> _Window:
        window = self._windows.get(check.key)
        if window is None:
            return _Window()
        last_expired = (now - check.period_ms) // check.bucket_ms - 1
        while window.buckets:
            bucket, amount = next(iter(window.buckets.items()))
            if bucket > last_expired:
                break
            window.buckets.popitem(last=False)
            window.total -= amount
        return window

    @staticmethod
    def _retry(window: _Window, check: Check, now: int) -> int:
        if not window.buckets:
            return 1
        needed = window.total + check.amount - check.limit
        freed = 0
        frees_it = next(reversed(window.buckets))
        for bucket, amount in window.buckets.items():
            freed += amount
            if freed >= needed:
                frees_it = bucket
                break
        return max(1, (frees_it + 1) * check.bucket_ms + check.period_ms - now)

    @staticmethod
    def _reset(window: _Window, check: Check, now: int) -> int:
        if not window.buckets:
            return 0
        newest = next(reversed(window.buckets))
        return max(0, (newest + 1) * check.bucket_ms + check.period_ms - now)

    def _charge(self, check: Check, lease: str, now: int, used: int, reset: int) -> tuple[int, int]:
        if check.kind is Kind.WINDOW:
            bucket = self._add_to_window(check, now, check.amount)
            return used + check.amount, (bucket + 1) * check.bucket_ms + check.period_ms - now
        if check.kind is Kind.CONCURRENCY:
            self._leases.setdefault(check.key, {})[lease] = now + check.period_ms
            return used + 1, reset
        if check.kind is Kind.COUNTER:
            counter = self._counters[check.key]  # it exists: an unseeded counter is never admitted
            counter.reserved += check.amount
            return self._add_to_counter(check, now, check.amount), reset
        return used, reset

    def _add_to_window(self, check: Check, now: int, amount: int) -> int:
        window = self._windows.get(check.key)
        if window is None:
            window = self._windows[check.key] = _Window()
        bucket = now // check.bucket_ms
        window.buckets[bucket] = window.buckets.get(bucket, 0) + amount
        window.total += amount
        window.expires = now + check.period_ms + 2 * check.bucket_ms
        return bucket

    def _add_to_counter(self, check: Check, now: int, delta: int, released: int = 0) -> int:
        counter = self._counters.get(check.key)
        if counter is None or counter.expires <= now:
            return 0  # gone (swept): the next admission seeds it from the ledger, corrections alone are not trusted
        if released > counter.reserved:  # held before this counter was seeded: the counter gets the whole amount
            delta += released - counter.reserved
        counter.value = max(0, counter.value + delta)
        counter.reserved = max(0, counter.reserved - released)
        counter.expires = now + check.period_ms
        return counter.value

    def settle_now(self, settlement: Settlement) -> None:
        now = int(self.clock())
        for check in settlement.release:
            self._leases.get(check.key, {}).pop(settlement.lease, None)
        for check, delta in settlement.window_deltas:
            if delta > 0:
                self._add_to_window(check, now, delta)
            elif delta < 0:
                window = self._windows.get(check.key)
                bucket = settlement.admitted_ms // check.bucket_ms
                if window is not None and bucket in window.buckets:
                    current = window.buckets[bucket]
                    window.buckets[bucket] = max(0, current + delta)
                    window.total += window.buckets[bucket] - current
        for check, delta, released in settlement.counter_deltas:
            if delta or released:
                self._add_to_counter(check, now, delta, released)

    def _sweep(self, now: int) -> None:
        """Forget state nobody touched for longer than it counts (Redis does this with key TTLs)."""
        for key in [k for k, w in self._windows.items() if w.expires <= now]:
            del self._windows[key]
        for key in [k for k, c in self._counters.items() if c.expires <= now]:
            del self._counters[key]
        for key, leases in list(self._leases.items()):
            for lease_id in [lease_id for lease_id, expires in leases.items() if expires <= now]:
                del leases[lease_id]
            if not leases:
                del self._leases[key]

    def __len__(self) -> int:
        return len(self._windows) + len(self._counters) + len(self._leases)
