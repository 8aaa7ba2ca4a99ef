"""Who may call what: every admin route authenticates; tenant keys never pass; billing only reads; named tokens."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable

import httpx

from tenantgate import database
from tenantgate.tenants import admin_tokens
from tenantgate.tenants.keys import hash_key
from tenantgate.tenants.models import AdminRole
from tenantgate.tenants.operation import CLI_ACTOR, Operation
from tests.conftest import SECRET_KEY
from tests.support.gateway import Gateway

BILLING_MAY_READ = {
    "/admin/tenants",
    "/admin/tenants/{tenant_id}",
    "/admin/tenants/{tenant_id}/keys",
    "/admin/keys",
    "/admin/keys/{key_id}",
    "/admin/plans",
    "/admin/plans/{plan_id}",
    "/admin/prices",
    "/admin/prices/{price_id}",
    "/admin/usage/events",
    "/admin/usage/export.csv",
    "/admin/usage/invoices",
}


def _admin_routes(gateway: Gateway) -> list[tuple[str, str]]:
    paths = httpx.get(gateway.url + "/openapi.json").json()["paths"]
    routes = [(m.upper(), p) for p, ops in paths.items() if p.startswith("/admin") for m in ops]
    assert len(routes) >= 20  # the test sees the real route table
    return routes


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x_missing", path)


def _token(gateway: Gateway, role: str) -> str:
    response = gateway.admin("POST", "/admin/tokens", json={"name": f"{role}-bot", "role": role})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def test_every_admin_route_refuses_missing_wrong_and_tenant_credentials(
    gateway_factory: Callable[..., Gateway], database_url: str, dev_upstream: str
) -> None:
    # Many failures from one address on purpose: raise the throttle (tested on its own) out of the way.
    gateway = gateway_factory(
        database_url=database_url, upstream_base_url=dev_upstream, auth_failures_per_source_per_minute=100_000
    )
    tenant_key = gateway.new_key()["key"]
    credentials = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {tenant_key}"},
        {"api-key": tenant_key},
    ]
    for method, path in _admin_routes(gateway):
        for headers in credentials:
            response = gateway.http.request(method, gateway.url + _concrete(path), headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "invalid_api_key"


def test_billing_reads_but_never_mutates(gateway: Gateway) -> None:
    billing = {"Authorization": f"Bearer {_token(gateway, 'billing')}"}
    tenant = gateway.create_tenant(f"read-{uuid.uuid4().hex[:8]}")
    readable = gateway.admin("GET", f"/admin/tenants/{tenant['id']}", headers=billing)
    assert readable.status_code == 200 and readable.json()["name"] == tenant["name"]
    for method, path in _admin_routes(gateway):
        response = gateway.admin(method, _concrete(path), headers=billing, json={"name": "x", "role": "admin"})
        if method == "GET" and path in BILLING_MAY_READ:
            assert response.status_code in (200, 404), (method, path)
        else:
            assert response.status_code == 403, (method, path)
            assert response.json()["error"]["code"] == "insufficient_role"
    # Nothing was created by the refused calls.
    assert gateway.admin("GET", "/admin/tenants", params={"name": "x"}).json()["data"] == []


def test_named_admin_token_is_stored_hashed_and_revocable(gateway: Gateway) -> None:
    plaintext = _token(gateway, "admin")
    assert plaintext.startswith("tga-")
    as_bot = {"Authorization": f"Bearer {plaintext}"}
    assert (
        gateway.admin(
            "POST", "/admin/tenants", headers=as_bot, json={"name": f"bot-{uuid.uuid4().hex[:6]}"}
        ).status_code
        == 201
    )
    listed = gateway.admin("GET", "/admin/tokens").json()["data"]
    bot = next(t for t in listed if plaintext.startswith(t["prefix"]))
    assert "token" not in bot and "token_hash" not in bot
    assert gateway.admin("GET", f"/admin/tokens/{bot['id']}").json() == bot

    async def stored_hashes() -> list[str]:
        engine = database.create_engine(gateway.settings.database_url)
        async with engine.connect() as connection:
            rows = (await connection.exec_driver_sql("SELECT token_hash FROM admin_tokens")).all()
        await engine.dispose()
        return [row[0] for row in rows]

    hashes = asyncio.run(stored_hashes())
    assert hash_key(SECRET_KEY.encode(), plaintext) in hashes and plaintext not in hashes

    revoked = gateway.admin("POST", f"/admin/tokens/{bot['id']}/revoke")
    assert revoked.json()["revoked_at"]
    assert gateway.admin("GET", "/admin/tenants", headers=as_bot).status_code == 401
    assert gateway.admin("GET", "/admin/tokens/adm_missing").status_code == 404


def test_named_tokens_work_without_a_bootstrap_token(
    gateway_factory: Callable[..., Gateway], database_url: str, dev_upstream: str
) -> None:
    async def create_token() -> str:
        engine = database.create_engine(database_url)
        async with database.session_scope(database.create_sessionmaker(engine)) as session:
            created = await admin_tokens.create_token(
                Operation(session, CLI_ACTOR, SECRET_KEY.encode()), name="ops", role=AdminRole.ADMIN
            )
        await engine.dispose()
        return created.plaintext

    token = asyncio.run(create_token())
    gateway = gateway_factory(database_url=database_url, upstream_base_url=dev_upstream, admin_token="")
    assert httpx.get(gateway.url + "/admin/tenants", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    anonymous = httpx.get(gateway.url + "/admin/tenants", headers={"Authorization": "Bearer tga-guess"})
    assert anonymous.status_code == 401


def test_token_validation(gateway: Gateway) -> None:
    response = gateway.admin("POST", "/admin/tokens", json={"name": "x", "role": "root"})
    assert response.status_code == 422 and response.json()["error"]["param"] == "role"
    assert "'admin', 'billing' or 'tenant'" in response.json()["error"]["message"]
