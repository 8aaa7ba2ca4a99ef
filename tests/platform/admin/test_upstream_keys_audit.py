"""Setting and removing a tenant's own upstream key is audited: who, which tenant and upstream, whether a base URL
is set and its host - and the key itself never reaches the audit log."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tenantgate import database
from tests.support.dns import TableResolver
from tests.support.gateway import Gateway

FIRST_KEY = "sk-tenant-first-" + uuid.uuid4().hex
SECOND_KEY = "sk-tenant-second-" + uuid.uuid4().hex


def _audit(gateway: Gateway, **params: Any) -> list[dict[str, Any]]:
    response = gateway.admin("GET", "/admin/audit", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


def _audit_table(database_url: str) -> str:
    """Every column of every audit row, as text."""

    async def read() -> str:
        engine = database.create_engine(database_url)
        try:
            async with engine.connect() as connection:
                rows = (await connection.exec_driver_sql("SELECT * FROM audit_log")).all()
        finally:
            await engine.dispose()
        return "\n".join(repr(tuple(row)) for row in rows)

    return asyncio.run(read())


def test_upstream_key_changes_are_audited_without_the_key(gateway: Gateway, database_url: str) -> None:
    gateway.runtime.upstream_guard.resolver = TableResolver({"tenant-resource.example.com": ["20.30.40.50"]})
    token = gateway.admin("POST", "/admin/tokens", json={"name": "byok-bot", "role": "admin"}).json()
    bot = {"Authorization": f"Bearer {token['token']}"}
    tenant = gateway.create_tenant(f"byok-{uuid.uuid4().hex[:8]}")
    path = f"/admin/tenants/{tenant['id']}/upstream-keys/default"

    first = gateway.admin("PUT", path, json={"api_key": FIRST_KEY}, headers={"x-request-id": "req-byok-1"})
    assert first.status_code == 200, first.text
    own_endpoint = {"api_key": SECOND_KEY, "base_url": "https://tenant-resource.example.com/v1"}
    second = gateway.admin("PUT", path, json=own_endpoint, headers=bot)
    assert second.status_code == 200, second.text
    assert gateway.admin("DELETE", path).status_code == 204
    assert gateway.admin("DELETE", path).status_code == 404  # nothing left to remove: no entry either

    entries = _audit(gateway, tenant_id=tenant["id"], target_type="upstream_key")
    assert [e["action"] for e in entries] == ["upstream_key.delete", "upstream_key.set", "upstream_key.set"]
    deleted, replaced, created = entries
    assert all(e["target_id"] == "default" and e["tenant_id"] == tenant["id"] for e in entries)
    assert (created["actor_id"], created["actor_role"], created["request_id"]) == ("bootstrap", "admin", "req-byok-1")
    assert created["before"] is None
    assert created["after"] == {"upstream": "default", "base_url": None}
    assert (replaced["actor_id"], replaced["actor_role"]) == (token["id"], "admin")
    assert replaced["before"] == created["after"]
    assert replaced["after"] == {"upstream": "default", "base_url": "https://tenant-resource.example.com/v1"}
    assert deleted["before"] == replaced["after"] and deleted["after"] is None
    assert [e["action"] for e in _audit(gateway, action="upstream_key.", target_id="default")][:3] == [
        e["action"] for e in entries
    ]

    stored = _audit_table(database_url)
    assert "upstream_key.set" in stored  # the query sees the entries
    for key in (FIRST_KEY, SECOND_KEY):
        assert key not in stored and key[-16:] not in stored


def test_refused_upstream_key_changes_leave_no_entry(gateway: Gateway) -> None:
    tenant = gateway.create_tenant(f"refused-{uuid.uuid4().hex[:8]}")
    base = f"/admin/tenants/{tenant['id']}/upstream-keys"
    unknown_upstream = gateway.admin("PUT", f"{base}/nope", json={"api_key": FIRST_KEY})
    assert unknown_upstream.status_code == 404
    internal = gateway.admin("PUT", f"{base}/default", json={"api_key": FIRST_KEY, "base_url": "https://10.0.0.1/v1"})
    assert internal.status_code == 400 and internal.json()["error"]["code"] == "invalid_base_url"
    assert _audit(gateway, tenant_id=tenant["id"], target_type="upstream_key") == []
