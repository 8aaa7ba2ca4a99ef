"""Plans through the admin API: CRUD, inheritance seen by callers, deletion refused while in use."""

from __future__ import annotations

import uuid

import openai
import pytest

from tests.support.gateway import Gateway


def test_plan_lifecycle(gateway: Gateway) -> None:
    name = f"starter-{uuid.uuid4().hex[:8]}"
    body = {
        "name": name,
        "rpm": 60,
        "tpm": 10_000,
        "rpd": 1000,
        "max_concurrency": 4,
        "monthly_token_quota": 5_000_000_000,
        "monthly_budget_usd": "99.95",
        "allowed_models": ["gpt-4o-mini"],
    }
    created = gateway.admin("POST", "/admin/plans", json=body)
    assert created.status_code == 201
    plan = created.json()
    assert plan["id"].startswith("plan_")
    assert {k: plan[k] for k in body} == body | {"monthly_budget_usd": 99.95}
    assert gateway.admin("GET", f"/admin/plans/{plan['id']}").json() == plan
    assert plan["id"] in [p["id"] for p in gateway.admin("GET", "/admin/plans").json()["data"]]

    patched = gateway.admin("PATCH", f"/admin/plans/{plan['id']}", json={"rpm": 120, "rpd": None}).json()
    assert (patched["rpm"], patched["rpd"], patched["tpm"]) == (120, None, 10_000)

    duplicate = gateway.admin("POST", "/admin/plans", json={"name": name})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["param"] == "name"

    tenant = gateway.create_tenant(f"on-plan-{uuid.uuid4().hex[:8]}", plan_id=plan["id"])
    in_use = gateway.admin("DELETE", f"/admin/plans/{plan['id']}")
    assert in_use.status_code == 409 and in_use.json()["error"]["code"] == "plan_in_use"
    gateway.admin("PATCH", f"/admin/tenants/{tenant['id']}", json={"plan_id": None})
    deleted = gateway.admin("DELETE", f"/admin/plans/{plan['id']}")
    assert deleted.json() == {"id": plan["id"], "object": "plan", "deleted": True}
    assert gateway.admin("GET", f"/admin/plans/{plan['id']}").status_code == 404


def test_plan_of_a_deleted_tenant_can_be_deleted(gateway: Gateway) -> None:
    plan = gateway.admin("POST", "/admin/plans", json={"name": f"old-{uuid.uuid4().hex[:8]}"}).json()
    tenant = gateway.create_tenant(f"gone-{uuid.uuid4().hex[:8]}", plan_id=plan["id"])
    gateway.admin("DELETE", f"/admin/tenants/{tenant['id']}")
    assert gateway.admin("DELETE", f"/admin/plans/{plan['id']}").status_code == 200
    assert gateway.admin("GET", f"/admin/tenants/{tenant['id']}").json()["plan_id"] is None


def test_plan_changes_reach_its_tenants_callers_at_once(gateway: Gateway) -> None:
    plan = gateway.admin("POST", "/admin/plans", json={"name": f"models-{uuid.uuid4().hex[:8]}"}).json()
    tenant = gateway.create_tenant(f"inherits-{uuid.uuid4().hex[:8]}", plan_id=plan["id"])
    client = gateway.client(gateway.create_key(tenant["id"])["key"])
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert client.chat.completions.create(**ask).choices
    gateway.admin("PATCH", f"/admin/plans/{plan['id']}", json={"allowed_models": ["gpt-4o"]})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(**ask)


def test_unknown_plan_is_404_and_bad_input_422(gateway: Gateway) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = gateway.admin(method, "/admin/plans/plan_missing", json={} if method == "PATCH" else None)
        assert response.status_code == 404 and response.json()["error"]["code"] == "plan_not_found"
    response = gateway.admin("POST", "/admin/plans", json={"name": "x", "monthly_budget_usd": "lots"})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "monthly_budget_usd"
    missing_name = gateway.admin("POST", "/admin/plans", json={"rpm": 1})
    assert missing_name.status_code == 422 and "name: Field required" in missing_name.json()["error"]["message"]
