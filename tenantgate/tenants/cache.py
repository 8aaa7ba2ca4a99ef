"""In-process TTL cache from key hash to Principal, so the proxy path does no DB query on a hit.

Unknown keys are cached too (shorter TTL) so a flood of bad keys cannot turn into a flood of queries.
Concurrent misses for the same key share one lookup. ``invalidate_*`` is the hook for cross-process
invalidation; the TTL is the backstop. A lookup that was already running when an invalidation arrived may have
read the old row, so its result is returned to its waiters but not cached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tenantgate.core.principal import Principal

Loader = Callable[[str], Awaitable[Principal | None]]


class KeyCache:
    def __init__(self, loader: Loader, *, ttl: float, negative_ttl: float, max_entries: int = 100_000) -> None:
        self._loader = loader
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max_entries = max_entries
        self._entries: dict[str, tuple[Principal | None, float]] = {}
        self._inflight: dict[str, asyncio.Future[Principal | None]] = {}
        self._generation = 0
        self.hits = 0
        self.misses = 0

    def known(self, key_hash: str) -> Principal | None:
        """The principal if this process resolved the key recently and it is still cached (a hit); never a lookup."""
        entry = self._entries.get(key_hash)
        if entry is not None and entry[0] is not None and entry[1] > time.monotonic():
            self.hits += 1
            return entry[0]
        return None

    async def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is not None and entry[1] > time.monotonic():
            self.hits += 1
            return entry[0]
        self.misses += 1
        pending = self._inflight.get(key_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._inflight[key_hash] = future
        generation = self._generation
        try:
            principal = await self._loader(key_hash)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            del self._inflight[key_hash]
        future.set_result(principal)
        if generation == self._generation:
            self._store(key_hash, principal)
        return principal

    def _store(self, key_hash: str, principal: Principal | None) -> None:
        if len(self._entries) >= self._max_entries:
            self._evict_expired()
            if len(self._entries) >= self._max_entries:
                self._entries.pop(next(iter(self._entries)))
        ttl = self._ttl if principal is not None else self._negative_ttl
        self._entries[key_hash] = (principal, time.monotonic() + ttl)

    def _evict_expired(self) -> None:
        now = time.monotonic()
        for key_hash in [k for k, (_, expires) in self._entries.items() if expires <= now]:
            del self._entries[key_hash]

    def invalidate_key(self, key_id: str) -> None:
        self._drop(lambda p: p.key_id == key_id)

    def invalidate_tenant(self, tenant_id: str) -> None:
        self._drop(lambda p: p.tenant_id == tenant_id)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def _drop(self, match: Callable[[Principal], bool]) -> None:
        self._generation += 1
        for key_hash in [k for k, (p, _) in self._entries.items() if p is not None and match(p)]:
            del self._entries[key_hash]

    def __len__(self) -> int:
        return len(self._entries)
