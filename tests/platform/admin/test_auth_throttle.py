"""Failed admin authentication is throttled per client address, on every admin router, and counted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tenantgate.platform.app import create_app
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.support.server import ServedApp

GOOD = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BAD = {"Authorization": "Bearer not-the-token"}


@pytest.fixture
def served(database_url: str, dev_upstream: str) -> Iterator[tuple[Any, httpx.Client]]:
    app = create_app(
        make_settings(database_url=database_url, upstream_base_url=dev_upstream, admin_auth_failure_limit="3/minute")
    )
    with ServedApp(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield app, client


def test_failures_are_throttled_even_for_the_right_token_then(served: tuple[Any, httpx.Client]) -> None:
    app, client = served
    for _ in range(10):  # successes never use up the allowance
        assert client.get("/admin/tenants", headers=GOOD).status_code == 200
    for _ in range(3):
        assert client.get("/admin/tenants", headers=BAD).status_code == 401
    refused = client.get("/admin/tenants", headers=GOOD)  # guessing right is no longer possible
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    throttle = app.state.runtime.admin_throttle
    assert throttle.failures == {"missing": 0, "invalid": 3, "throttled": 1}
    # The proxy path is untouched by the admin throttle.
    assert client.get("/v1/models", headers=BAD).status_code == 401


def test_throttle_applies_on_every_admin_router(served: tuple[Any, httpx.Client]) -> None:
    """slowapi #281: limits can silently stop applying to routes from routers; check each of ours."""
    _, client = served
    for _ in range(3):
        client.post("/admin/tenants", json={"name": "x"})  # no credentials at all: counted too
    for method, path in [
        ("GET", "/admin/tenants"),
        ("POST", "/admin/keys/key_x/revoke"),
        ("GET", "/admin/plans"),
        ("GET", "/admin/tokens"),
        ("GET", "/admin/audit"),
        ("GET", "/admin/tenants/ten_x/keys"),
    ]:
        assert client.request(method, path, headers=GOOD).status_code == 429, path
