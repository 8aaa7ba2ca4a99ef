"""Cross-process invalidation of the key cache, so revocation and suspension apply everywhere within a second.

Every mutation that changes what a key may do (revoke, rotation expiry, key/tenant/plan update, suspend, resume,
delete) is published, after its transaction commits, on ``{redis_prefix}:invalidate``; every server process
subscribes from its lifespan and drops the matching cache entries. Without Redis only the local cache is
invalidated (one process). If the subscription breaks, the listener reconnects and clears its whole cache,
because messages sent meanwhile are lost; the cache TTL remains the backstop.

The same channel tells processes that price overrides changed (scope ``prices``): they reload them at once
instead of at their next periodic refresh. Older processes ignore the scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

from tenantgate.resp import RespClient
from tenantgate.tenants.cache import KeyCache

log = logging.getLogger("tenantgate.invalidation")

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
    ) -> None:
        self._cache = cache
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
        """Subscribe, waiting (briefly) for the first attempt so a server that is up misses no invalidation."""
        if self._redis is None:
            return
        self._task = asyncio.create_task(self._listen(self._redis), name="tenantgate-invalidation")
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
