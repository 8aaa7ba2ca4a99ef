"""One Redis client per server process: the limiter, stored responses' owners, invalidations and readiness share
one connection (the invalidation subscription has its own, as a subscribed connection takes no other commands),
with the limiter's timeout policy (platform/runtime.py's ``redis_client``)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import redis

from tests.support.gateway import Gateway

MESSAGES = [{"role": "user", "content": "hi"}]


def test_a_process_holds_one_command_connection_and_one_subscription(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str, redis_url: str, redis_prefix: str
) -> None:
    name = f"{redis_prefix}-gateway"
    gateway = gateway_factory(
        database_url=sqlite_url,
        upstream_base_url=dev_upstream,
        redis_url=f"{redis_url}?client_name={name}",
        redis_prefix=redis_prefix,
        limits_redis_timeout_ms=250,
    )
    key = gateway.new_key(rpm=100)
    sdk = gateway.client(key["key"])
    sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # the limiter's script call
    sdk.responses.create(model="gpt-4o-mini", input="hi")  # the stored response's owner, SET in Redis
    assert httpx.get(gateway.url + "/readyz", timeout=10).json()["checks"]["redis"] is True  # a PING
    revoked = gateway.admin("POST", f"/admin/keys/{key['id']}/revoke")  # a PUBLISH
    assert revoked.status_code in (200, 204), revoked.text

    inspector = redis.Redis.from_url(redis_url)
    try:
        ours = [
            line
            for line in inspector.execute_command("CLIENT", "LIST").decode().splitlines()
            if f" name={name} " in line
        ]
    finally:
        inspector.close()
    fields = [dict(part.split("=", 1) for part in line.split() if "=" in part) for line in ours]
    assert sorted(int(f["sub"]) for f in fields) == [0, 1]  # one for commands, one subscribed to invalidations
    assert gateway.runtime.limiter.store.primary is not None
    assert gateway.runtime.limiter.store.primary.client is gateway.runtime.redis
    assert gateway.runtime.redis.stall_timeout == gateway.runtime.redis.connect_timeout == 0.25
