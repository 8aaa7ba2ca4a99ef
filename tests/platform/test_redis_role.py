"""A Redis the limiter cannot write to counts as down: a replica is refused at start, and a master demoted by a
failover makes /readyz, ``tenantgate_dependency_up{redis}`` (the console's dependency card) say so while the limiter
falls back (platform/runtime.py ``check_redis``, wire/respendpoint.py ``server_refusal``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from openai.types.chat import ChatCompletionMessageParam

from tenantgate.platform.app import create_app
from tenantgate.wire.resp import RedisRefused
from tests.conftest import make_settings
from tests.support.gateway import Gateway
from tests.support.prometheus import scrape
from tests.support.services import own_redis_server

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def _replica_of(url: str) -> tuple[str, str]:
    master = urlsplit(url)
    return master.hostname or "127.0.0.1", str(master.port or 6379)


@pytest.fixture
def master_url() -> Iterator[str]:
    with own_redis_server() as url:
        yield url


async def test_a_replica_is_refused_at_start_with_what_to_do(sqlite_url: str, redis_url: str, tmp_path: Path) -> None:
    with own_redis_server("--replicaof", *_replica_of(redis_url)) as replica:
        settings = make_settings(database_url=sqlite_url, redis_url=replica, spool_dir=tmp_path / "spool")
        app = create_app(settings)
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "lifespan.startup"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        # What uvicorn does when a worker starts: it exits with the failure's message.
        with pytest.raises(RedisRefused) as refused:
            await asyncio.wait_for(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send), 10)
    assert [message["type"] for message in sent] == ["lifespan.startup.failed"]
    message = str(refused.value)
    assert message.startswith("TENANTGATE_REDIS_URL: Redis at 127.0.0.1:")
    assert "read-only replica" in message and "current master" in message


def test_a_master_demoted_under_the_gateway_is_reported_down(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str, redis_url: str, master_url: str
) -> None:
    gateway = gateway_factory(
        database_url=sqlite_url, upstream_base_url=dev_upstream, redis_url=master_url, limits_redis_timeout_ms=500
    )
    key = gateway.new_key(rpm=100)
    sdk = gateway.client(key["key"])
    sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert _readyz(gateway) == (200, True)
    store = gateway.runtime.limiter.store
    assert store.stats.fallbacks == 0

    admin = redis.Redis.from_url(master_url)
    try:
        admin.replicaof(*_replica_of(redis_url))  # what Sentinel does to an old master
        assert _readyz(gateway) == (503, False)
        asyncio.run_coroutine_threadsafe(gateway.runtime.telemetry.check_health(), gateway.loop).result(10)
        metrics = scrape(gateway.url)
        assert metrics.total("tenantgate_dependency_up", tenantgate_dependency="redis") == 0
        assert metrics.total("tenantgate_dependency_up", tenantgate_dependency="database") == 1
        # Requests go on, limited in process memory (failing open), and the fallback is counted.
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert store.stats.fallbacks >= 1

        admin.replicaof("NO", "ONE")  # promoted back
        assert _readyz(gateway) == (200, True)
    finally:
        admin.close()


def _readyz(gateway: Gateway) -> tuple[int, bool | None]:
    response = httpx.get(gateway.url + "/readyz", timeout=10)
    return response.status_code, response.json()["checks"]["redis"]
