"""The in-process key cache: hits skip the loader, misses share one load, entries expire."""

from __future__ import annotations

import asyncio

from tenantgate.core.principal import Limits, Principal
from tenantgate.tenants.cache import KeyCache


def _principal(key_id: str = "key_1", tenant_id: str = "ten_1") -> Principal:
    return Principal(
        key_id=key_id,
        key_prefix="tg-abc",
        key_name="k",
        tenant_id=tenant_id,
        tenant_name="t",
        tenant_active=True,
        expires_at=None,
        key_limits=Limits(),
        tenant_limits=Limits(),
        allowed_models=None,
    )


async def test_hit_does_not_call_loader_and_concurrent_misses_share_one_load() -> None:
    calls: list[str] = []

    async def loader(key_hash: str) -> Principal | None:
        calls.append(key_hash)
        await asyncio.sleep(0.01)
        return _principal()

    cache = KeyCache(loader, ttl=60, negative_ttl=60)
    results = await asyncio.gather(*(cache.get("h1") for _ in range(20)))
    assert all(r == _principal() for r in results)
    assert await cache.get("h1") == _principal()
    assert calls == ["h1"]


async def test_unknown_keys_are_cached_briefly() -> None:
    calls = 0

    async def loader(key_hash: str) -> Principal | None:
        nonlocal calls
        calls += 1
        return None

    cache = KeyCache(loader, ttl=60, negative_ttl=0.05)
    assert await cache.get("bad") is None
    assert await cache.get("bad") is None
    assert calls == 1
    await asyncio.sleep(0.06)
    assert await cache.get("bad") is None
    assert calls == 2


async def test_invalidation_by_key_and_tenant() -> None:
    principals = {
        "a": _principal("key_a", "ten_1"),
        "b": _principal("key_b", "ten_1"),
        "c": _principal("key_c", "ten_2"),
    }
    loads: list[str] = []

    async def loader(key_hash: str) -> Principal | None:
        loads.append(key_hash)
        return principals[key_hash]

    cache = KeyCache(loader, ttl=60, negative_ttl=60)
    for h in "abc":
        await cache.get(h)
    cache.invalidate_key("key_a")
    cache.invalidate_tenant("ten_2")
    for h in "abc":
        await cache.get(h)
    assert loads == ["a", "b", "c", "a", "c"]


async def test_loader_failure_propagates_to_all_waiters_and_is_not_cached() -> None:
    attempts = 0

    async def loader(key_hash: str) -> Principal | None:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        if attempts == 1:
            raise ConnectionError("db down")
        return _principal()

    cache = KeyCache(loader, ttl=60, negative_ttl=60)
    results = await asyncio.gather(*(cache.get("h") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await cache.get("h") == _principal()


async def test_lookup_running_during_an_invalidation_is_not_cached() -> None:
    """A lookup that read the row before a revocation committed must not keep serving it for a whole TTL."""
    release = asyncio.Event()
    loads = 0

    async def loader(key_hash: str) -> Principal | None:
        nonlocal loads
        loads += 1
        if loads == 1:
            await release.wait()  # read the old row, then the invalidation arrives
        return _principal()

    cache = KeyCache(loader, ttl=60, negative_ttl=60)
    pending = asyncio.create_task(cache.get("h"))
    await asyncio.sleep(0.01)
    cache.invalidate_key("key_1")
    release.set()
    assert await pending == _principal()  # its waiters get the answer they asked for
    await cache.get("h")
    assert loads == 2  # but the next request reads again
