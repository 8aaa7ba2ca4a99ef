"""Keeps Redis trouble off the request path: a short timeout, then fail open or fail closed.

Fail open (the default) continues with per-process memory limits - with N processes a limit is then enforced
N times over - logs the outage once and counts every request that fell back. Fail closed refuses with 503.
After a failure Redis is left alone for ``retry_seconds``, so a dead or hanging Redis costs one timeout per
process and interval, not one per request. A settlement goes to the store that admitted the request. ``stats``
holds the counts; the runtime exports them as metrics (``tenantgate.limits.redis_fallbacks``, ``..redis_errors``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tenantgate.tenants.limits.checks import Check, Settlement, Verdict
from tenantgate.tenants.limits.memory import MemoryLimitStore
from tenantgate.tenants.limits.redis import RedisLimitStore
from tenantgate.wire.resp import RedisError, RedisRefused

log = logging.getLogger("tenantgate.limits")
_ERRORS = (RedisError, OSError, TimeoutError)


class LimiterUnavailable(Exception):
    """Redis cannot be reached and the limiter fails closed."""


@dataclass(slots=True)
class GuardStats:
    fallbacks: int = 0
    errors: int = 0
    settle_errors: int = 0
    redis_checks: int = 0
    """Admissions (not peeks) the Redis store decided, with a script call or from a credit."""
    memory_checks: int = 0
    """Admissions decided in process memory: no Redis configured, or the fail-open fallback."""


class GuardedStore:
    def __init__(
        self,
        primary: RedisLimitStore | None,
        fallback: MemoryLimitStore,
        *,
        fail_open: bool,
        retry_seconds: float,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.fail_open = fail_open
        self.retry_seconds = retry_seconds
        self.stats = GuardStats()
        self._down_until = 0.0
        self._down = False
        self._settling: set[asyncio.Future[object]] = set()
        self._settle_error_logged = float("-inf")

    async def admit(
        self, checks: Sequence[Check], lease: str, *, dry: bool = False
    ) -> tuple[Verdict, RedisLimitStore | MemoryLimitStore]:
        primary = self.primary
        if primary is None:
            self.stats.memory_checks += not dry
            return self.fallback.admit_now(checks, lease, dry=dry), self.fallback
        if time.monotonic() >= self._down_until:
            try:
                # No timer here: the store's client bounds every wait (connect timeout, and a stall watchdog that
                # fails the calls and drops the connection when Redis stays silent).
                verdict = await primary.admit(checks, lease, dry=dry)
            except _ERRORS as exc:
                self._failed(exc)
            else:
                if self._down:
                    self._down = False
                    log.warning("rate limiter: Redis answers again, limits are shared across processes again")
                self.stats.redis_checks += not dry
                return verdict, primary
        if not self.fail_open:
            raise LimiterUnavailable
        self.stats.fallbacks += 1
        self.stats.memory_checks += not dry
        return self.fallback.admit_now(checks, lease, dry=dry), self.fallback

    def admissions_by_source(self) -> list[tuple[tuple[str], float]]:
        """Checks so far by where they were decided: ``redis`` (a script call), ``credit`` (a credit Redis granted
        this process) or ``memory`` (no Redis configured, or the fail-open fallback)."""
        credit = self.primary.credit_admissions if self.primary is not None else 0
        redis = self.stats.redis_checks - credit
        return [(("redis",), redis), (("credit",), credit), (("memory",), self.stats.memory_checks)]

    def _failed(self, exc: BaseException) -> None:
        self.stats.errors += 1
        self._down_until = time.monotonic() + self.retry_seconds
        if not self._down:
            self._down = True
            mode = "per-process memory limits (fail open)" if self.fail_open else "refusing requests (fail closed)"
            # A refused server (a replica after a failover, a Cluster node) says what it is; other errors, their kind.
            reason = str(exc) if isinstance(exc, RedisRefused) else type(exc).__name__
            log.error("rate limiter: Redis failed (%s); %s until it answers again", reason, mode)

    def settle_soon(self, settlement: Settlement, store: RedisLimitStore | MemoryLimitStore) -> None:
        """Apply a settlement without making anyone wait: at once in memory, in the background in Redis.

        In Redis it is one script call sent without awaiting it (no task per request): it leaves with the next
        admission's write, or within the client's short deferral, and the connection's watchdog bounds how long
        its answer may take. Failures are counted and logged at most once a second."""
        if not settlement:
            return
        if isinstance(store, MemoryLimitStore):
            store.settle_now(settlement)
            return
        future = store.settle_nowait(settlement)
        if future is None:  # settled against the process's credit: nothing to send
            return
        self._settling.add(future)
        future.add_done_callback(self._settled)

    def _settled(self, future: asyncio.Future[object]) -> None:
        self._settling.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            return
        self.stats.settle_errors += 1
        now = time.monotonic()
        if now - self._settle_error_logged >= 1.0:
            self._settle_error_logged = now
            # A lost release holds a concurrency slot until its lease expires; a lost correction skews one window.
            log.warning("rate limiter: settling requests in Redis failed (%s)", type(exc).__name__)

    async def drain(self, limit_seconds: float = 2.0) -> None:
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=limit_seconds)

    async def close(self) -> None:
        await self.drain()
        if self.primary is not None:
            await self.primary.close()
