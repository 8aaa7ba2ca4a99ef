"""Key-cache invalidation across processes through real Redis pub/sub."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from tenantgate.core.principal import Limits, Principal
from tenantgate.tenants.cache import KeyCache
from tenantgate.tenants.invalidation import Invalidation, InvalidationBus, channel_name, decode, encode
from tenantgate.wire.resp import RespClient


def _principal(key_id: str, tenant_id: str) -> Principal:
    return Principal(
        key_id=key_id,
        key_prefix="tg-x",
        key_name="k",
        tenant_id=tenant_id,
        tenant_name="t",
        tenant_active=True,
        expires_at=None,
        key_limits=Limits(),
        tenant_limits=Limits(),
        allowed_models=None,
    )


PRINCIPALS = {"a": _principal("key_a", "ten_1"), "b": _principal("key_b", "ten_1"), "c": _principal("key_c", "ten_2")}


def _cache() -> KeyCache:
    async def loader(key_hash: str) -> Principal | None:
        return PRINCIPALS[key_hash]

    return KeyCache(loader, ttl=60, negative_ttl=60)


async def _fill(*caches: KeyCache) -> None:
    for cache in caches:
        for key_hash in PRINCIPALS:
            await cache.get(key_hash)


async def _until(condition: object, limit: float = 1.0) -> float:
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - started < limit, "not within the limit"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def test_messages_round_trip_and_garbage_clears_everything() -> None:
    batch = [Invalidation("key", "key_a"), Invalidation("tenant", "ten_1"), Invalidation("all")]
    assert decode(encode(batch)) == batch
    assert decode(b"not json") == [Invalidation("all")]


async def test_published_change_reaches_the_other_process_cache(redis_url: str, redis_prefix: str) -> None:
    channel = channel_name(redis_prefix)
    here, there = _cache(), _cache()
    redis_here, redis_there = RespClient.from_url(redis_url), RespClient.from_url(redis_url)
    bus_here, bus_there = InvalidationBus(here, redis_here, channel), InvalidationBus(there, redis_there, channel)
    await bus_here.start()
    await bus_there.start()
    try:
        assert bus_here.subscribed and bus_there.subscribed
        await _fill(here, there)
        await bus_here.publish([Invalidation("key", "key_a")])
        assert len(here) == 2  # applied locally at once
        await _until(lambda: len(there) == 2)
        await bus_here.publish([Invalidation("tenant", "ten_1")])
        await _until(lambda: len(there) == 1)
        await bus_there.publish([Invalidation("all")])
        await _until(lambda: len(here) == 0)
    finally:
        for bus in (bus_here, bus_there):
            await bus.stop()
        await redis_here.aclose()
        await redis_there.aclose()


async def test_lost_subscription_reconnects_and_clears_the_cache(redis_url: str, redis_prefix: str) -> None:
    channel = channel_name(redis_prefix)
    cache = _cache()
    client = RespClient.from_url(f"{redis_url}?client_name={redis_prefix}")  # named: only ours is killed
    bus = InvalidationBus(cache, client, channel, retry_seconds=0.05)
    await bus.start()
    publisher = Redis.from_url(redis_url)
    try:
        await _fill(cache)
        assert len(cache) == 3
        clients = await publisher.client_list()
        ours = [c["id"] for c in clients if c.get("name") == redis_prefix and "P" in c.get("flags", "")]
        assert ours, "the subscriber connection is not visible"
        for client_id in ours:
            await publisher.client_kill_filter(_id=client_id)
        # Messages sent while disconnected are lost, so the reconnected listener starts from an empty cache...
        await _until(lambda: len(cache) == 0, limit=3.0)
        await _until(lambda: bus.subscribed, limit=3.0)
        # ...and hears new ones again.
        await cache.get("a")
        await publisher.publish(channel, encode([Invalidation("key", "key_a")]))
        await _until(lambda: len(cache) == 0)
    finally:
        await bus.stop()
        await client.aclose()
        await publisher.aclose()


async def test_without_redis_invalidation_is_local() -> None:
    cache = _cache()
    bus = InvalidationBus(cache, None, "unused")
    await bus.start()
    await _fill(cache)
    await bus.publish([Invalidation("key", "key_c")])
    assert len(cache) == 2
    await bus.stop()


async def test_price_changes_reach_the_other_process_without_touching_its_key_cache(
    redis_url: str, redis_prefix: str
) -> None:
    channel = channel_name(redis_prefix)
    cache = _cache()
    reloads: list[str] = []
    redis_here, redis_there = RespClient.from_url(redis_url), RespClient.from_url(redis_url)
    bus_here = InvalidationBus(_cache(), redis_here, channel)
    bus_there = InvalidationBus(cache, redis_there, channel, on_prices=lambda: reloads.append("prices"))
    await bus_there.start()
    try:
        reloads.clear()  # (re)subscribing counts as a change: messages may have been missed
        await _fill(cache)
        await bus_here.publish([Invalidation("prices")])
        await _until(lambda: reloads == ["prices"])
        assert len(cache) == 3
        # Scopes this process does not know (from a newer one) are dropped, not turned into a cache clear.
        assert decode(b'[["prices", ""], ["key", "key_a"], ["someday", "x"]]') == [
            Invalidation("prices"),
            Invalidation("key", "key_a"),
        ]
    finally:
        await bus_there.stop()
        await redis_here.aclose()
        await redis_there.aclose()
