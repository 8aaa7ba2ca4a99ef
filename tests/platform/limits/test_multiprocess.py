"""Exactness across processes: two gateway server processes share Postgres and Redis; many parallel clients."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tenantgate import database
from tenantgate.devupstream import DevUpstream
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEY
from tests.conftest import _create_pg_database as create_pg_database
from tests.platform.limits.processes import GatewayProcess
from tests.support.server import ServedApp
from tests.support.services import own_redis_prefix

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Twelve words: the dev upstream's answer is then 19 tokens long.
MESSAGES = [{"role": "user", "content": "one two three four five six seven eight nine ten eleven twelve"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """Each token takes 100 ms: a streamed answer stays in flight for about two seconds."""
    with ServedApp(DevUpstream(token_delay_ms=100, api_key=UPSTREAM_KEY), lifespan="off") as served:
        yield served.url + "/v1"


@pytest.fixture(scope="module")
def gateways(postgres_server: str, redis_url: str, upstream: str) -> Iterator[list[str]]:
    postgres_url, drop_database = create_pg_database(postgres_server)
    database.upgrade(postgres_url)
    with own_redis_prefix(redis_url) as redis_prefix:
        # Fail closed with a generous timeout: a request Redis could not check is refused, never admitted on
        # per-process memory limits, so an over-admission can only come from the shared store itself.
        processes = [
            GatewayProcess(
                database_url=postgres_url,
                upstream=upstream,
                redis_url=redis_url,
                redis_prefix=redis_prefix,
                limits_fail_mode="closed",
                limits_redis_timeout_ms="3000",
            )
            for _ in range(2)
        ]
        try:
            for process in processes:
                process.wait_ready()
            yield [p.url for p in processes]
        finally:
            for process in processes:
                process.stop()
            drop_database()


def _tenant_and_keys(url: str, tenant: dict[str, object], keys: list[dict[str, object]]) -> list[str]:
    created = httpx.post(url + "/admin/tenants", headers=ADMIN, json={"name": f"mp-{uuid.uuid4().hex[:8]}", **tenant})
    assert created.status_code == 201, created.text
    return [
        httpx.post(url + f"/admin/tenants/{created.json()['id']}/keys", headers=ADMIN, json=fields).json()["key"]
        for fields in keys
    ]


async def _fire(urls: list[str], keys: list[str], count: int, **body: object) -> Counter[int]:
    """``count`` requests at once, spread over every gateway and key."""
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(i: int) -> int:
            response = await client.post(
                urls[i % len(urls)] + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {keys[i % len(keys)]}"},
                json={"model": "gpt-4o-mini", "messages": MESSAGES, **body},
            )
            await response.aread()
            return response.status_code

        return Counter(await asyncio.gather(*(one(i) for i in range(count))))


def test_key_rpm_is_exact_across_two_processes(gateways: list[str]) -> None:
    (key,) = _tenant_and_keys(gateways[0], {}, [{"rpm": 25}])
    statuses = asyncio.run(_fire(gateways, [key], 80, max_tokens=1))
    assert statuses == Counter({200: 25, 429: 55})


def test_tenant_rpm_caps_all_its_keys_across_two_processes(gateways: list[str]) -> None:
    keys = _tenant_and_keys(gateways[1], {"rpm": 30}, [{"rpm": 1000}, {"rpm": 1000}, {"rpm": 1000}])
    statuses = asyncio.run(_fire(gateways, keys, 90, max_tokens=1))
    assert statuses == Counter({200: 30, 429: 60})


def test_concurrency_is_exact_across_two_processes(gateways: list[str]) -> None:
    (key,) = _tenant_and_keys(gateways[0], {}, [{"max_concurrency": 4}])
    statuses = asyncio.run(_fire(gateways, [key], 16, stream=True))
    assert statuses == Counter({200: 4, 429: 12})
    # Every slot came back: the next wave gets exactly as many in again.
    statuses = asyncio.run(_fire(gateways, [key], 8, stream=True))
    assert statuses == Counter({200: 4, 429: 4})


def test_a_busy_key_served_from_local_credit_never_gets_more_than_its_limit(gateways: list[str]) -> None:
    """RPM 400 leaves room for credit (limits/redis.py): in a steady stream of requests each process admits most of
    them on its own. The sum stays within the limit, and once unused credit is given back (within about a second)
    the rest of the limit is there for the taking - exactly, not one more."""
    (key,) = _tenant_and_keys(gateways[0], {}, [{"rpm": 400, "tpm": 10_000_000}])

    async def waves(count: int) -> Counter[int]:
        statuses: Counter[int] = Counter()
        for _ in range(count):
            statuses += await _fire(gateways, [key], 10, max_tokens=1)
        return statuses

    first = asyncio.run(waves(50))
    assert set(first) <= {200, 429} and first[200] <= 400
    time.sleep(3.5)  # a credit lasts at most 1 s, and the sweep that gives it back runs every second
    second = asyncio.run(waves(20))
    assert first[200] + second[200] == 400
