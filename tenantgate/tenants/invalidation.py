"""Cross-process invalidation of the key cache, so revocation and suspension apply everywhere within a second.

Every mutation that changes what a key may do (revoke, rotation expiry, key/tenant/plan update, suspend, resume,
delete) is published, after its transaction commits, on ``{redis_prefix}:invalidate``; every server process
subscribes from its lifespan and drops the matching cache entries. If the subscription breaks, the listener
reconnects and clears its whole cache, because messages sent meanwhile are lost; the cache TTL remains the
backstop. Without Redis, the processes read the same invalidations from the database instead: every mutation
also writes them to the invalidation log in its transaction, which each process polls every half second
(tenants/invalidation_log.py).

The same channel tells processes that price overrides changed (scope ``prices``): they reload them at once
instead of at their next periodic refresh. Older processes ignore the scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

import orjson

from tenantgate.tenants.cache import KeyCache
from tenantgate.wire.resp import RespClient

if TYPE_CHECKING:
    from tenantgate.tenants.invalidation_log import InvalidationLog

log = logging.getLogger("tenantgate.invalidation")
POLL_SECONDS = 0.5

Scope = Literal["key", "tenant", "all", "prices"]
_SCOPES = ("key", "tenant", "all", "prices")


@dataclass(frozen=True, slots=True)
class Invalidation:
    scope: Scope
    id: str = ""

    def apply(self, cache: KeyCache) -> None:
        if self.scope == "key":
            cache.invalidate_key(self.id)
        elif self.scope == "tenant":
            cache.invalidate_tenant(self.id)
        elif self.scope == "all":
            cache.clear()


ALL = Invalidation("all")
PRICES = Invalidation("prices")


def known(scope: str, id_: str) -> Invalidation | None:
    """The invalidation, or None when this process does not know the scope (a newer one sent it): dropped, not
    turned into a cache clear."""
    return Invalidation(cast(Scope, scope), id_) if scope in _SCOPES else None


def channel_name(redis_prefix: str) -> str:
    return f"{redis_prefix}:invalidate"


def encode(invalidations: Sequence[Invalidation]) -> bytes:
    return orjson.dumps([[i.scope, i.id] for i in invalidations])


def decode(payload: bytes) -> list[Invalidation]:
    """Unknown or malformed messages clear everything: wrongly dropping a cache entry costs one query."""
    try:
        items = orjson.loads(payload)
        return [Invalidation(scope, str(id_)) for scope, id_ in items if scope in _SCOPES]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return [ALL]


async def publish(redis: RespClient, channel: str, invalidations: Sequence[Invalidation]) -> None:
    """Publish to every subscribed process. A Redis failure is logged, not raised: the change is committed."""
    if not invalidations:
        return
    try:
        await redis.execute("PUBLISH", channel, encode(invalidations))
    except Exception as exc:
        log.warning("could not publish cache invalidation (%s); other processes catch up by TTL", type(exc).__name__)


class InvalidationBus:
    def __init__(
        self,
        cache: KeyCache,
        redis: RespClient | None,
        channel: str,
        *,
        retry_seconds: float = 1.0,
        on_prices: Callable[[], None] | None = None,
        db_log: InvalidationLog | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        """``db_log``: polled instead when there is no Redis (several workers on one node)."""
        self._cache = cache
        self._log = db_log
        self._poll_seconds = poll_seconds
        self._on_prices = on_prices
        self._redis = redis
        self._channel = channel
        self._retry_seconds = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self.received = 0

    def _apply(self, invalidations: Sequence[Invalidation]) -> None:
        for invalidation in invalidations:
            if invalidation.scope == "prices":
                if self._on_prices is not None:
                    self._on_prices()
            else:
                invalidation.apply(self._cache)

    async def publish(self, invalidations: Sequence[Invalidation]) -> None:
        self._apply(invalidations)
        if self._redis is not None:
            await publish(self._redis, self._channel, invalidations)

    async def start(self, wait_seconds: float = 2.0) -> None:
        """Subscribe (or take a position in the log), waiting briefly for the first attempt so a server that is up
        misses no invalidation, and one whose Redis or database is slow still starts."""
        if self._redis is not None:
            self._task = asyncio.create_task(self._listen(self._redis), name="tenantgate-invalidation")
        elif self._log is not None:
            self._task = asyncio.create_task(self._poll(self._log), name="tenantgate-invalidation-log")
        else:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), wait_seconds)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def _poll(self, invalidation_log: InvalidationLog) -> None:
        failing = False
        while True:
            failing = await self._read_log(invalidation_log, failing)
            self._first_attempt.set()
            await asyncio.sleep(self._poll_seconds)

    async def _read_log(self, invalidation_log: InvalidationLog, failing: bool) -> bool:
        """Read and apply the new entries; True while reading fails (said once, not every half second).

        Nothing is lost meanwhile: the next read starts where the last one ended.
        """
        try:
            invalidations = await invalidation_log.read()
        except Exception as exc:
            if not failing:
                log.warning("cannot read the cache invalidation log (%s); retrying", type(exc).__name__)
            return True
        if failing:
            log.info("reading the cache invalidation log again")
        self.received += len(invalidations)
        self._apply(invalidations)
        return False

    async def _listen(self, redis: RespClient) -> None:
        while True:
            try:
                async with redis.subscribe(self._channel) as subscription:
                    # Whatever was published while not subscribed is lost: start over from the database.
                    self._apply([ALL, PRICES])
                    self._subscribed.set()
                    self._first_attempt.set()
                    while True:
                        data = await subscription.message()
                        self.received += 1
                        self._apply(decode(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed.clear()
                self._first_attempt.set()
                log.warning("cache invalidation subscription lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(self._retry_seconds)
