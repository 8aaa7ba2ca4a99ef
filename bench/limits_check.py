"""Cost of the per-request limit check: memory store vs Redis, as the proxy pays it.

Times ``Limiter.admit`` + ``Limiter.finish`` (the settlement goes to Redis in the background) for a key and tenant
with RPM, TPM, RPD and concurrency limits each, plus a monthly token quota: 9 checks in one store call.

    .venv/bin/python bench/limits_check.py [--redis redis://127.0.0.1:6379] [--requests 5000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from tenantgate.core.exchange import Exchange, Usage
from tenantgate.core.principal import Limits, Principal
from tenantgate.platform.context import RequestContext
from tenantgate.platform.limits.hook import Limiter
from tenantgate.platform.runtime import redis_client
from tenantgate.settings import Settings

BIG = 10**9
PAYLOAD = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello to the gateway"}],
    "max_tokens": 64,
}


def _principal(limited: bool) -> Principal:
    key = Limits(rpm=BIG, tpm=BIG, rpd=BIG, max_concurrency=BIG) if limited else Limits()
    tenant = Limits(rpm=BIG, tpm=BIG, rpd=BIG, max_concurrency=BIG, monthly_token_quota=BIG) if limited else Limits()
    return Principal("key_bench", "tg-bench", "bench", "ten_bench", "bench", True, None, key, tenant, None)


def _exchange(principal: Principal) -> Exchange:
    exchange = Exchange(ctx=RequestContext("req_bench", principal), operation="chat", path="/v1/chat/completions")
    exchange.model, exchange.payload = "gpt-4o-mini", PAYLOAD
    return exchange


async def _one(limiter: Limiter, principal: Principal) -> float:
    exchange = _exchange(principal)
    started = time.perf_counter()
    await limiter.admit(exchange)
    elapsed = time.perf_counter() - started
    exchange.usage = Usage(input_tokens=20, output_tokens=12)
    exchange.status = 200
    limiter.finish(exchange)
    return elapsed


async def _run(name: str, limiter: Limiter, principal: Principal, requests: int, concurrency: int) -> None:
    for _ in range(200):  # warm up: scripts loaded, connections open, tokenizer cached
        await _one(limiter, principal)
    sequential = [await _one(limiter, principal) for _ in range(requests)]
    await limiter.store.drain()
    semaphore = asyncio.Semaphore(concurrency)

    async def bounded() -> float:
        async with semaphore:
            return await _one(limiter, principal)

    started = time.perf_counter()
    await asyncio.gather(*(bounded() for _ in range(requests)))
    wall = time.perf_counter() - started
    await limiter.store.drain()
    sequential.sort()
    p50 = statistics.median(sequential) * 1e6
    p99 = sequential[int(len(sequential) * 0.99)] * 1e6
    print(f"{name:<32} p50 {p50:8.1f} us   p99 {p99:8.1f} us   {requests / wall:9.0f} checks/s at {concurrency}")


async def _ping(limiter: Limiter, requests: int) -> None:
    """A bare Redis round trip on the same client, for scale: what the script adds on top of it."""
    assert limiter.store.primary is not None
    client = limiter.store.primary.client
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        await client.execute("PING")
        samples.append(time.perf_counter() - started)
    samples.sort()
    p50, p99 = statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99)] * 1e6
    print(f"{'redis PING (one round trip)':<32} p50 {p50:8.1f} us   p99 {p99:8.1f} us")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    from tenantgate import tokens

    tokens.warm_up()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    base = {"env": "dev", "_env_file": None, "redis_prefix": prefix}
    memory = Limiter.from_settings(Settings(**base), None)
    redis_settings = Settings(**base, redis_url=args.redis, limits_redis_timeout_ms=1000)
    redis = Limiter.from_settings(redis_settings, redis_client(redis_settings))
    try:
        await _run("no limits configured", memory, _principal(False), args.requests, args.concurrency)
        await _run("memory store, 9 checks", memory, _principal(True), args.requests, args.concurrency)
        await _run("redis store, 9 checks", redis, _principal(True), args.requests, args.concurrency)
        await _ping(redis, args.requests)
        assert redis.store.stats.errors == 0 and redis.store.stats.fallbacks == 0, "Redis calls failed"
    finally:
        client = redis.store.primary.client if redis.store.primary else None
        if client is not None:
            cursor, keys = b"0", []
            while True:
                cursor, batch = await client.execute("SCAN", cursor, "MATCH", f"{prefix}:*", "COUNT", 1000)
                keys += batch
                if cursor == b"0":
                    break
            if keys:
                await client.execute("DEL", *keys)
        await redis.close()
        await memory.close()
        if client is not None:
            await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
