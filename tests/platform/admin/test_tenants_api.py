"""Tenants through the admin API: lifecycle, listing, suspension seen by callers, errors."""

from __future__ import annotations

import uuid

import openai
import pytest

from tests.support.gateway import Gateway


def _name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_tenant_lifecycle(gateway: Gateway) -> None:
    plan = gateway.admin("POST", "/admin/plans", json={"name": _name("plan"), "rpm": 100}).json()
    name = _name("acme")
    created = gateway.create_tenant(name, plan_id=plan["id"], tpm=5000, monthly_budget_usd=12.5)
    assert (created["plan_id"], created["tpm"], created["monthly_budget_usd"]) == (plan["id"], 5000, 12.5)
    assert created["status"] == "active" and created["deleted_at"] is None

    got = gateway.admin("GET", f"/admin/tenants/{created['id']}").json()
    assert got == created

    renamed = _name("acme2")
    patched = gateway.admin(
        "PATCH",
        f"/admin/tenants/{created['id']}",
        json={"name": renamed, "rpm": 10, "tpm": None, "allowed_models": ["b", "a", "b"]},
    ).json()
    assert (patched["name"], patched["rpm"], patched["tpm"]) == (renamed, 10, None)
    assert patched["allowed_models"] == ["a", "b"]
    assert patched["monthly_budget_usd"] == 12.5  # untouched fields stay

    assert gateway.admin("POST", f"/admin/tenants/{created['id']}/suspend").json()["status"] == "suspended"
    assert gateway.admin("POST", f"/admin/tenants/{created['id']}/resume").json()["status"] == "active"

    deleted = gateway.admin("DELETE", f"/admin/tenants/{created['id']}")
    assert deleted.status_code == 200
    assert deleted.json()["status"] == "deleted" and deleted.json()["deleted_at"]
    # Soft delete: still readable (usage history refers to it), not listed by default, name free again.
    assert gateway.admin("GET", f"/admin/tenants/{created['id']}").json()["status"] == "deleted"
    listed = gateway.admin("GET", "/admin/tenants", params={"name": renamed}).json()["data"]
    assert listed == []
    gone = gateway.admin("GET", "/admin/tenants", params={"name": renamed, "status": "deleted"}).json()["data"]
    assert [t["id"] for t in gone] == [created["id"]]
    assert gateway.create_tenant(renamed)["id"] != created["id"]

    refused = gateway.admin("PATCH", f"/admin/tenants/{created['id']}", json={"rpm": 1})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "tenant_deleted"


def test_list_pages_and_filters(gateway: Gateway) -> None:
    tag = uuid.uuid4().hex[:8]
    plan = gateway.admin("POST", "/admin/plans", json={"name": f"p-{tag}"}).json()
    ids = [gateway.create_tenant(f"page-{tag}-{i}", plan_id=plan["id"] if i % 2 else None)["id"] for i in range(5)]
    gateway.admin("POST", f"/admin/tenants/{ids[0]}/suspend")

    seen: list[str] = []
    after = None
    while True:
        params = {"name": f"PAGE-{tag}", "limit": 2} | ({"after": after} if after else {})
        page = gateway.admin("GET", "/admin/tenants", params=params).json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        seen += [t["id"] for t in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == list(reversed(ids))  # newest first, every tenant exactly once

    on_plan = gateway.admin("GET", "/admin/tenants", params={"plan_id": plan["id"]}).json()["data"]
    assert sorted(t["id"] for t in on_plan) == sorted([ids[1], ids[3]])
    suspended = gateway.admin("GET", "/admin/tenants", params={"status": "suspended", "name": tag}).json()["data"]
    assert [t["id"] for t in suspended] == [ids[0]]


def test_suspension_reaches_callers_at_once(gateway: Gateway) -> None:
    key = gateway.new_key()
    client = gateway.client(key["key"])
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert client.chat.completions.create(**ask).choices
    gateway.admin("POST", f"/admin/tenants/{key['tenant_id']}/suspend")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(**ask)
    assert refused.value.code == "tenant_suspended"
    gateway.admin("POST", f"/admin/tenants/{key['tenant_id']}/resume")
    assert client.chat.completions.create(**ask).choices


def test_limit_changes_reach_callers_at_once(gateway: Gateway) -> None:
    key = gateway.new_key()
    client = gateway.client(key["key"])
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert client.chat.completions.create(**ask).choices  # cached now
    gateway.admin("PATCH", f"/admin/tenants/{key['tenant_id']}", json={"allowed_models": ["gpt-4o"]})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(**ask)


def test_deleted_tenant_keys_stop_working(gateway: Gateway) -> None:
    key = gateway.new_key()
    client = gateway.client(key["key"])
    assert client.models.list().data
    gateway.admin("DELETE", f"/admin/tenants/{key['tenant_id']}")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert gateway.admin("GET", f"/admin/keys/{key['id']}").json()["status"] == "revoked"
    [entry] = gateway.admin(
        "GET", "/admin/audit", params={"action": "tenant.delete", "target_id": key["tenant_id"]}
    ).json()["data"]
    assert entry["after"] == {"status": "deleted", "revoked_keys": 1}


def test_unknown_tenant_is_404(gateway: Gateway) -> None:
    for method, path in [
        ("GET", "/admin/tenants/ten_missing"),
        ("PATCH", "/admin/tenants/ten_missing"),
        ("POST", "/admin/tenants/ten_missing/suspend"),
        ("POST", "/admin/tenants/ten_missing/resume"),
        ("DELETE", "/admin/tenants/ten_missing"),
        ("GET", "/admin/tenants/ten_missing/keys"),
        ("POST", "/admin/tenants/ten_missing/keys"),
    ]:
        response = gateway.admin(method, path, json={} if method in ("PATCH", "POST") else None)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"] == {
            "message": "No tenant with id 'ten_missing'.",
            "type": "invalid_request_error",
            "param": None,
            "code": "tenant_not_found",
        }


def test_unknown_plan_reference_is_404_on_the_field(gateway: Gateway) -> None:
    response = gateway.admin("POST", "/admin/tenants", json={"name": _name(), "plan_id": "plan_nope"})
    assert response.status_code == 404
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == ("plan_not_found", "plan_id")


def test_validation_errors_are_readable(gateway: Gateway) -> None:
    tenant = gateway.create_tenant(_name())
    cases = [
        ({"name": None}, "name", "name cannot be null"),
        ({"rpn": 5}, "rpn", "Extra inputs are not permitted"),
        ({"rpm": 2**40}, "rpm", "less than or equal to 2147483647"),
        ({"allowed_models": "gpt-4o"}, "allowed_models", "valid list"),
        ({"monthly_budget_usd": -1}, "monthly_budget_usd", "greater than or equal to 0"),
    ]
    for body, param, words in cases:
        response = gateway.admin("PATCH", f"/admin/tenants/{tenant['id']}", json=body)
        assert response.status_code == 422, body
        error = response.json()["error"]
        assert error["param"] == param and words in error["message"], error
    bad_filter = gateway.admin("GET", "/admin/tenants", params={"status": "sleeping"})
    assert bad_filter.status_code == 422 and bad_filter.json()["error"]["param"] == "status"
    assert gateway.admin("GET", "/admin/tenants", params={"limit": 0}).status_code == 422
