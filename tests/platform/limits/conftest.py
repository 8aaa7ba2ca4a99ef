"""Gateways for the limits tests: on the memory store and on a real Redis, over a throwaway SQLite database."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.databases import migrated_sqlite_url
from tests.support.gateway import Gateway

MESSAGES = [{"role": "user", "content": "Say hello to the gateway"}]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return migrated_sqlite_url(tmp_path / "limits.db")


@pytest.fixture(params=["memory", "redis"])
def store_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {}
    return {
        "redis_url": request.getfixturevalue("redis_url"),
        "redis_prefix": request.getfixturevalue("redis_prefix"),
        # What these tests check is the limits, not failing open: a reply slowed by a busy test machine (four
        # pytest workers on two cores) must not read as Redis down. test_redis_faults.py tests the short timeout.
        "limits_redis_timeout_ms": 3000,
    }


@pytest.fixture
def limited(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str, store_settings: dict[str, Any]
) -> Gateway:
    return gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, **store_settings)


def tenant_with_key(gateway: Gateway, tenant_fields: dict[str, Any] | None = None, **key_fields: Any) -> dict[str, Any]:
    tenant = gateway.create_tenant(f"t-{uuid.uuid4().hex[:8]}", **(tenant_fields or {}))
    return gateway.create_key(tenant["id"], **key_fields)


def me(gateway: Gateway, key: str) -> dict[str, Any]:
    response = httpx.get(gateway.base_url + "/me", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for(read: Callable[[], Any], expected: Any, timeout: float = 5.0) -> Any:
    """Settlements reach Redis in the background, a few milliseconds after the response."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.02)
        value = read()
    return value


def shift_clock(gateway: Gateway, offset_ms: float) -> None:
    """Move the limiter's clock (both stores) ``offset_ms`` ahead of the wall clock."""

    def clock() -> float:
        return time.time() * 1000 + offset_ms

    store = gateway.runtime.limiter.store
    store.fallback.clock = clock
    if store.primary is not None:
        store.primary.clock = clock
