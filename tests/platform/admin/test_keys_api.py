"""API keys through the admin API: listing, updates, expiry, revocation and rotation as callers see them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import openai
import pytest

from tests.support.gateway import Gateway

ASK = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_keys_are_listed_without_secrets(gateway: Gateway) -> None:
    first = gateway.new_key(name="backend")
    second = gateway.create_key(first["tenant_id"], name="ci", rpm=5, allowed_models=["gpt-4o-mini"])
    listed = gateway.admin("GET", f"/admin/tenants/{first['tenant_id']}/keys").json()
    assert [k["id"] for k in listed["data"]] == [second["id"], first["id"]]
    for key in listed["data"]:
        assert "key" not in key and "key_hash" not in key
        assert set(key) >= {"prefix", "name", "status", "created_at", "last_used_at", "expires_at"}
    assert listed["data"][0] | {"key": second["key"]} == second
    assert gateway.admin("GET", f"/admin/keys/{first['id']}").json()["prefix"] == first["prefix"]
    everywhere = gateway.admin("GET", "/admin/keys", params={"tenant_id": first["tenant_id"], "name": "ci"})
    assert [k["id"] for k in everywhere.json()["data"]] == [second["id"]]


def test_update_revoke_and_status_filters(gateway: Gateway) -> None:
    key = gateway.new_key()
    client = gateway.client(key["key"])
    assert client.chat.completions.create(**ASK).choices

    patched = gateway.admin("PATCH", f"/admin/keys/{key['id']}", json={"name": "renamed", "rpm": 7}).json()
    assert (patched["name"], patched["rpm"]) == ("renamed", 7)
    patched = gateway.admin("PATCH", f"/admin/keys/{key['id']}", json={"allowed_models": ["gpt-4o"]}).json()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(**ASK)
    gateway.admin("PATCH", f"/admin/keys/{key['id']}", json={"allowed_models": None})
    assert client.chat.completions.create(**ASK).choices

    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    expired = gateway.admin("PATCH", f"/admin/keys/{key['id']}", json={"expires_at": past}).json()
    assert expired["status"] == "expired"
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(**ASK)
    listed = gateway.admin("GET", "/admin/keys", params={"tenant_id": key["tenant_id"], "status": "expired"})
    assert [k["id"] for k in listed.json()["data"]] == [key["id"]]
    gateway.admin("PATCH", f"/admin/keys/{key['id']}", json={"expires_at": None})
    assert client.chat.completions.create(**ASK).choices

    revoked = gateway.admin("POST", f"/admin/keys/{key['id']}/revoke")
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_at"]
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(**ASK)
    again = gateway.admin("POST", f"/admin/keys/{key['id']}/revoke")
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    refused = gateway.admin("PATCH", f"/admin/keys/{key['id']}", json={"name": "zombie"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "key_revoked"
    active = gateway.admin("GET", "/admin/keys", params={"tenant_id": key["tenant_id"], "status": "active"})
    assert active.json()["data"] == []


def test_rotation_keeps_the_old_key_for_the_grace_period(gateway: Gateway) -> None:
    old = gateway.new_key(name="main", rpm=30)
    old_client = gateway.client(old["key"])
    assert old_client.chat.completions.create(**ASK).choices

    response = gateway.admin("POST", f"/admin/keys/{old['id']}/rotate", json={"grace_seconds": 1.5})
    assert response.status_code == 201
    rotated = response.json()
    assert rotated["id"] != old["id"] and rotated["key"] != old["key"]
    assert (rotated["name"], rotated["rpm"], rotated["tenant_id"]) == ("main", 30, old["tenant_id"])
    assert rotated["previous"]["id"] == old["id"] and rotated["previous"]["status"] == "active"
    new_client = gateway.client(rotated["key"])

    assert old_client.chat.completions.create(**ASK).choices  # still inside the grace period
    assert new_client.chat.completions.create(**ASK).choices
    time.sleep(1.7)
    with pytest.raises(openai.AuthenticationError):
        old_client.chat.completions.create(**ASK)
    assert new_client.chat.completions.create(**ASK).choices
    assert gateway.admin("GET", f"/admin/keys/{old['id']}").json()["status"] == "expired"


def test_rotation_without_grace_stops_the_old_key_now(gateway: Gateway) -> None:
    old = gateway.new_key()
    old_client = gateway.client(old["key"])
    assert old_client.models.list().data
    rotated = gateway.admin("POST", f"/admin/keys/{old['id']}/rotate", json={"grace_seconds": 0}).json()
    with pytest.raises(openai.AuthenticationError):
        old_client.models.list()
    assert gateway.client(rotated["key"]).models.list().data
    gateway.admin("POST", f"/admin/keys/{rotated['id']}/revoke")
    refused = gateway.admin("POST", f"/admin/keys/{rotated['id']}/rotate")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "key_revoked"
    too_long = gateway.admin("POST", f"/admin/keys/{old['id']}/rotate", json={"grace_seconds": 10**9})
    assert too_long.status_code == 422 and too_long.json()["error"]["param"] == "grace_seconds"


def test_unknown_key_is_404(gateway: Gateway) -> None:
    for method, path in [
        ("GET", "/admin/keys/key_missing"),
        ("PATCH", "/admin/keys/key_missing"),
        ("POST", "/admin/keys/key_missing/revoke"),
        ("POST", "/admin/keys/key_missing/rotate"),
    ]:
        response = gateway.admin(method, path, json={} if method != "GET" else None)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "key_not_found"


def test_keys_of_a_deleted_tenant_cannot_be_created(gateway: Gateway) -> None:
    key = gateway.new_key()
    gateway.admin("DELETE", f"/admin/tenants/{key['tenant_id']}")
    response = gateway.admin("POST", f"/admin/tenants/{key['tenant_id']}/keys", json={})
    assert response.status_code == 409 and response.json()["error"]["code"] == "tenant_deleted"
