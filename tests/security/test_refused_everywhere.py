"""Dead keys and suspended tenants are refused on every tenant route, and tenant keys on every admin route.

A revoked key, an expired key, a key rotated out after its grace period and a key of a suspended tenant each get
401 (403 ``tenant_suspended`` for the suspension) in OpenAI's error shape on every proxied route, and nothing of
theirs reaches the upstream. A live tenant key gets 401/403 on every operation of /admin in the OpenAPI document.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from tenantgate.devupstream import DevUpstream
from tenantgate.platform.proxy.routes import CREATE_ROUTES as POST_ENDPOINTS
from tests.conftest import UPSTREAM_KEY
from tests.support.gateway import Gateway
from tests.support.server import ServedApp

GET_ROUTES = [
    "/v1/models",
    "/v1/models/gpt-4o-mini",
    "/v1/responses/resp_0123456789abcdef",
    "/v1/me",
    "/v1/organization/usage/completions?start_time=0",
    "/v1/organization/costs?start_time=0",
]
JSON_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "input": "hi", "prompt": "hi"}


class CountingUpstream:
    """The dev upstream, remembering every request that reached it."""

    def __init__(self) -> None:
        self.inner = DevUpstream(api_key=UPSTREAM_KEY)
        self.requests: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests.append(f"{scope['method']} {scope['path']}")
        await self.inner(scope, receive, send)


@pytest.fixture
def counting_upstream() -> Iterator[tuple[str, CountingUpstream]]:
    app = CountingUpstream()
    with ServedApp(app, lifespan="off") as served:
        yield served.url + "/v1", app


def _every_route(client: httpx.Client, key: str) -> Iterator[tuple[str, httpx.Response]]:
    headers = {"Authorization": f"Bearer {key}"}
    for path, endpoint in POST_ENDPOINTS.items():
        if endpoint.body == "multipart":
            files = {"file": ("a.wav", b"RIFF0000WAVE", "audio/wav")}
            response = client.post(path, headers=headers, data={"model": "whisper-1"}, files=files)
        else:
            response = client.post(path, headers=headers, json=JSON_BODY)
        yield f"POST {path}", response
    for path in GET_ROUTES:
        yield f"GET {path}", client.get(path, headers=headers)
    yield "DELETE /v1/responses/{id}", client.delete("/v1/responses/resp_0123456789abcdef", headers=headers)


def _assert_refused(client: httpx.Client, key: str, status: int, code: str | None) -> None:
    problems = []
    for route, response in _every_route(client, key):
        body: Any = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        error = body.get("error") if isinstance(body, dict) else None
        shaped = isinstance(error, dict) and {"message", "type", "param", "code"} <= error.keys()
        if response.status_code != status or not shaped or (code is not None and error["code"] != code):
            problems.append(f"{route}: {response.status_code} {response.text[:200]}")
        elif key in response.text:
            problems.append(f"{route}: the refusal echoes the full key")
    assert problems == []


def _wait_refused(client: httpx.Client, key: str, status: int) -> None:
    """Revocation and suspension apply 'within a second' (key cache): wait for the first refusal."""
    deadline = time.monotonic() + 5
    while client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code != status:
        assert time.monotonic() < deadline, "key still accepted after 5 s"
        time.sleep(0.1)


def test_dead_keys_and_suspended_tenants_are_refused_on_every_route_and_reach_no_upstream(
    gateway_factory: Callable[..., Gateway], database_url: str, counting_upstream: tuple[str, CountingUpstream]
) -> None:
    upstream_url, upstream = counting_upstream
    # Three dead keys on every route are more failed authentications than the per-address throttle lets through:
    # its 429 would answer before the key is even looked up.
    gateway = gateway_factory(
        database_url=database_url, upstream_base_url=upstream_url, auth_failures_per_source_per_minute=100_000
    )
    client = httpx.Client(base_url=gateway.url, timeout=30)

    revoked = gateway.new_key("revoked")
    expired = gateway.new_key("expired")
    rotated = gateway.new_key("rotated")
    suspended = gateway.new_key("suspended")
    live = gateway.new_key("live")
    # Each key worked once (so refusals below are not a cache of "unknown key").
    for key in (revoked, expired, rotated, suspended, live):
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {key['key']}"}).status_code == 200

    assert gateway.admin("POST", f"/admin/keys/{revoked['id']}/revoke").status_code == 200
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    patched = gateway.admin("PATCH", f"/admin/keys/{expired['id']}", json={"expires_at": past})
    assert patched.status_code == 200, patched.text
    rotation = gateway.admin("POST", f"/admin/keys/{rotated['id']}/rotate", json={"grace_seconds": 1})
    assert rotation.status_code == 201, rotation.text
    assert gateway.admin("POST", f"/admin/tenants/{suspended['tenant_id']}/suspend").status_code == 200
    time.sleep(1.2)  # the rotation's grace period is over

    for key in (revoked, expired, rotated):
        _wait_refused(client, key["key"], 401)
    _wait_refused(client, suspended["key"], 403)
    upstream.requests.clear()

    _assert_refused(client, revoked["key"], 401, "invalid_api_key")
    _assert_refused(client, expired["key"], 401, "invalid_api_key")
    _assert_refused(client, rotated["key"], 401, "invalid_api_key")
    _assert_refused(client, suspended["key"], 403, "tenant_suspended")
    assert upstream.requests == []

    # The control: the replacement key and an untouched key still get through to the upstream.
    ok = client.get("/v1/models", headers={"Authorization": f"Bearer {rotation.json()['key']}"})
    assert ok.status_code == 200
    assert client.post("/v1/embeddings", headers={"Authorization": f"Bearer {live['key']}"}, json=JSON_BODY)
    assert len(upstream.requests) == 2


def test_a_tenant_key_is_refused_on_every_admin_operation(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    # The failed-admin-auth throttle (429 after 10/minute) would answer most of these before authorization does.
    gateway = gateway_factory(
        database_url=sqlite_url, upstream_base_url=dev_upstream, auth_failures_per_source_per_minute=100_000
    )
    key = gateway.new_key("intruder")
    spec = gateway.admin("GET", "/openapi.json").json()
    operations = [
        (method.upper(), re.sub(r"\{[^}]+\}", "x_0123456789", path))
        for path, item in spec["paths"].items()
        if path.startswith("/admin")
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert len(operations) >= 25, operations
    problems = []
    for method, path in operations:
        for header in ({"Authorization": f"Bearer {key['key']}"}, {"api-key": key["key"]}):
            response = gateway.http.request(method, gateway.url + path, headers=header, json={})
            if response.status_code not in (401, 403) or "error" not in response.json():
                problems.append(f"{method} {path} ({next(iter(header))}): {response.status_code} {response.text[:200]}")
    assert problems == []
    # Nothing was created behind the refusals.
    tenants = gateway.admin("GET", "/admin/tenants").json()
    assert len(tenants["data"] if isinstance(tenants, dict) else tenants) == 1
