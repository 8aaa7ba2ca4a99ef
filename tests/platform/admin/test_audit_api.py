"""The audit log: every admin mutation, with actor, request id and a secret-free before/after."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.gateway import Gateway


def _audit(gateway: Gateway, **params: Any) -> list[dict[str, Any]]:
    response = gateway.admin("GET", "/admin/audit", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


def test_mutations_are_audited_with_actor_and_request_id(gateway: Gateway) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    name = f"audited-{uuid.uuid4().hex[:8]}"
    created = gateway.admin(
        "POST", "/admin/tenants", json={"name": name, "rpm": 5}, headers={"x-request-id": "req-audit-create"}
    )
    tenant = created.json()
    gateway.admin("PATCH", f"/admin/tenants/{tenant['id']}", json={"rpm": 9, "tpm": None})
    gateway.admin("PATCH", f"/admin/tenants/{tenant['id']}", json={"rpm": 9})  # no change: no entry
    gateway.admin("POST", f"/admin/tenants/{tenant['id']}/suspend")

    entries = _audit(gateway, target_id=tenant["id"])
    assert [e["action"] for e in entries] == ["tenant.suspend", "tenant.update", "tenant.create"]
    suspend, update, create = entries
    assert create["actor_id"] == "bootstrap" and create["actor_role"] == "admin"
    assert create["request_id"] == "req-audit-create"
    assert create["after"]["name"] == name and create["after"]["rpm"] == 5 and create["before"] is None
    assert (update["before"], update["after"]) == ({"rpm": 5}, {"rpm": 9})
    assert (suspend["before"], suspend["after"]) == ({"status": "active"}, {"status": "suspended"})
    assert update["request_id"] and update["request_id"] != create["request_id"]
    assert all(datetime.fromisoformat(e["created_at"]) >= started for e in entries)


def test_key_actions_are_audited_without_secrets(gateway: Gateway) -> None:
    key = gateway.new_key(name="main")
    rotated = gateway.admin("POST", f"/admin/keys/{key['id']}/rotate", json={"grace_seconds": 60}).json()
    gateway.admin("POST", f"/admin/keys/{rotated['id']}/revoke")

    entries = _audit(gateway, tenant_id=key["tenant_id"])
    actions = sorted(e["action"] for e in entries)
    assert actions == ["key.create", "key.create", "key.revoke", "key.rotate", "tenant.create"]
    rotate = next(e for e in entries if e["action"] == "key.rotate")
    assert rotate["target_id"] == key["id"] and rotate["after"]["replaced_by"] == rotated["id"]
    assert rotate["before"] == {"expires_at": None} and rotate["after"]["expires_at"]
    text = json.dumps(entries)
    for secret in (key["key"], rotated["key"]):
        assert secret not in text and secret[len(key["prefix"]) :] not in text
    assert "key_hash" not in text

    assert [e["action"] for e in _audit(gateway, tenant_id=key["tenant_id"], action="key.revoke")] == ["key.revoke"]
    assert len(_audit(gateway, tenant_id=key["tenant_id"], action="key.")) == 4
    assert len(_audit(gateway, tenant_id=key["tenant_id"], target_type="tenant")) == 1


def test_filters_by_actor_time_and_pages(gateway: Gateway) -> None:
    response = gateway.admin("POST", "/admin/tokens", json={"name": "robot", "role": "admin"}).json()
    robot = {"Authorization": f"Bearer {response['token']}"}
    tag = uuid.uuid4().hex[:8]
    for i in range(3):
        gateway.admin("POST", "/admin/tenants", json={"name": f"robot-{tag}-{i}"}, headers=robot)
    by_robot = _audit(gateway, actor_id=response["id"])
    assert [e["after"]["name"] for e in by_robot] == [f"robot-{tag}-{i}" for i in (2, 1, 0)]
    assert all(e["actor_id"] == response["id"] for e in by_robot)
    token_entry = _audit(gateway, target_type="admin_token", target_id=response["id"])[0]
    assert token_entry["action"] == "admin_token.create" and response["token"] not in json.dumps(token_entry)
    assert set(token_entry["after"]) == {"name", "role", "prefix", "revoked_at"}

    first = gateway.admin("GET", "/admin/audit", params={"actor_id": response["id"], "limit": 2}).json()
    assert first["has_more"] and len(first["data"]) == 2
    rest = gateway.admin(
        "GET", "/admin/audit", params={"actor_id": response["id"], "limit": 2, "after": first["last_id"]}
    ).json()
    assert [e["id"] for e in first["data"] + rest["data"]] == [e["id"] for e in by_robot]

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert _audit(gateway, actor_id=response["id"], since=future) == []
    assert len(_audit(gateway, actor_id=response["id"], until=future)) == 3
    naive = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert len(_audit(gateway, actor_id=response["id"], since=naive)) == 3  # no offset = UTC
    assert gateway.admin("GET", "/admin/audit", params={"since": "yesterday"}).status_code == 422
