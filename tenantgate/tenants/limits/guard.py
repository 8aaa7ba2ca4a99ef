"""Keeps Redis trouble off the request path: a short timeout, then fail open or fail closed.

Fail open (the default) continues with per-process memory limits - with N processes a limit is then enforced
N times over - logs the outage once and counts every request that fell back. Fail closed refuses with 503.
After a failure Redis is left alone for ``retry_seconds``, so a dead or hanging Redis costs one timeout per
process and interval, not one per request. A settlement goes to the store that admitted the request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import metrics
from redis.exceptions import RedisError

from tenantgate.tenants.limits.checks import Check, Settlement, Verdict
from tenantgate.tenants.limits.memory import MemoryLimitStore
from tenantgate.tenants.limits.redis import RedisLimitStore

log = logging.getLogger("tenantgate.limits")
_meter = metrics.get_meter("tenantgate.limits")
_FALLBACKS = _meter.create_counter(
    "tenantgate.limits.redis_fallbacks", unit="{request}", description="Limit checks served without Redis"
)
_STORE_ERRORS = _meter.create_counter(
    "tenantgate.limits.redis_errors", unit="{error}", description="Failed or timed-out limiter calls to Redis"
)
_ERRORS = (RedisError, OSError, TimeoutError)
_MAX_SETTLE_BATCH = 256


class LimiterUnavailable(Exception):
    """Redis cannot be reached and the limiter fails closed."""


@dataclass(slots=True)
class GuardStats:
    fallbacks: int = 0
    errors: int = 0
    settle_errors: int = 0


class GuardedStore:
    def __init__(
        self,
        primary: RedisLimitStore | None,
        fallback: MemoryLimitStore,
        *,
        timeout: float | None,
        fail_open: bool,
        retry_seconds: float,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.timeout = timeout
        self.fail_open = fail_open
        self.retry_seconds = retry_seconds
        self.stats = GuardStats()
        self._down_until = 0.0
        self._down = False
        self._pending: set[asyncio.Task[None]] = set()
        self._queued: list[Settlement] = []
        self._flusher: asyncio.Task[None] | None = None

    async def admit(
        self, checks: Sequence[Check], lease: str, *, dry: bool = False
    ) -> tuple[Verdict, RedisLimitStore | MemoryLimitStore]:
        primary = self.primary
        if primary is None:
            return self.fallback.admit_now(checks, lease, dry=dry), self.fallback
        if time.monotonic() >= self._down_until:
            try:
                if self.timeout is None:
                    verdict = await primary.admit(checks, lease, dry=dry)
                else:
                    async with asyncio.timeout(self.timeout):
                        verdict = await primary.admit(checks, lease, dry=dry)
            except _ERRORS as exc:
                if isinstance(exc, TimeoutError):
                    primary.reset()  # a hanging Redis: stop waiting on that connection, reconnect next time
                self._failed(exc)
            else:
                if self._down:
                    self._down = False
                    log.warning("rate limiter: Redis answers again, limits are shared across processes again")
                return verdict, primary
        if not self.fail_open:
            raise LimiterUnavailable
        self.stats.fallbacks += 1
        _FALLBACKS.add(1)
        return self.fallback.admit_now(checks, lease, dry=dry), self.fallback

    def _failed(self, exc: BaseException) -> None:
        self.stats.errors += 1
        _STORE_ERRORS.add(1)
        self._down_until = time.monotonic() + self.retry_seconds
        if not self._down:
            self._down = True
            mode = "per-process memory limits (fail open)" if self.fail_open else "refusing requests (fail closed)"
            log.error("rate limiter: Redis failed (%s); %s until it answers again", type(exc).__name__, mode)

    def settle_soon(self, settlement: Settlement, store: RedisLimitStore | MemoryLimitStore) -> None:
        """Apply a settlement without making anyone wait: at once in memory, in the background in Redis."""
        if not settlement:
            return
        if isinstance(store, MemoryLimitStore):
            store.settle_now(settlement)
            return
        # Settlements that arrive while one round trip is under way go together in the next one, so under load
        # many requests share a single pipelined call instead of one round trip each.
        self._queued.append(settlement)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._settle(store))
            self._pending.add(self._flusher)
            self._flusher.add_done_callback(self._pending.discard)

    async def _settle(self, store: RedisLimitStore) -> None:
        while self._queued:
            batch, self._queued = self._queued[:_MAX_SETTLE_BATCH], self._queued[_MAX_SETTLE_BATCH:]
            try:
                # Nobody waits for this one, and a lost release holds a slot until its lease expires.
                async with asyncio.timeout(max(self.timeout or 0.0, 1.0)):
                    await store.settle_many(batch)
            except _ERRORS as exc:
                self.stats.settle_errors += len(batch)
                _STORE_ERRORS.add(1)
                log.warning("rate limiter: settling %d requests in Redis failed (%s)", len(batch), type(exc).__name__)

    async def drain(self, limit_seconds: float = 2.0) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=limit_seconds)

    async def close(self) -> None:
        await self.drain()
        if self.primary is not None:
            await self.primary.close()
