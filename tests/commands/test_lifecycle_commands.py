"""The CLI mirrors the admin API: same shapes with --json, same validation, audited as `cli`."""

from __future__ import annotations

import json

from tests.commands.conftest import Invoke


def test_tenant_commands(cli: Invoke) -> None:
    plan = cli("plans", "create", "--name", "gold", "--rpm", "100", "--monthly-budget-usd", "25.5", "--json")
    assert (plan["rpm"], plan["monthly_budget_usd"]) == (100, 25.5)
    tenant = cli("tenants", "create", "--name", "acme", "--plan", plan["id"], "--json")
    assert set(tenant) == {"id", "name"}  # the pinned contract of `tenants create --json`

    got = cli("tenants", "get", tenant["id"], "--json")
    assert (got["plan_id"], got["status"]) == (plan["id"], "active")
    updated = cli("tenants", "update", tenant["id"], "--tpm", "500", "--model", "gpt-4o", "--model", "a", "--json")
    assert (updated["tpm"], updated["allowed_models"]) == (500, ["a", "gpt-4o"])
    cleared = cli("tenants", "update", tenant["id"], "--clear", "tpm", "--clear", "plan_id", "--json")
    assert (cleared["tpm"], cleared["plan_id"], cleared["allowed_models"]) == (None, None, ["a", "gpt-4o"])
    assert cli("tenants", "suspend", tenant["id"], "--json")["status"] == "suspended"
    assert cli("tenants", "list", "--status", "suspended", "--json")["data"][0]["id"] == tenant["id"]
    assert cli("tenants", "resume", tenant["id"], "--json")["status"] == "active"
    assert "acme  active" in cli("tenants", "list")
    assert cli("tenants", "delete", tenant["id"], "--json")["status"] == "deleted"
    assert cli("tenants", "list", "--json") == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }

    actions = [e["action"] for e in cli("audit", "--tenant", tenant["id"], "--json")["data"]]
    assert actions == [
        "tenant.delete",
        "tenant.resume",
        "tenant.suspend",
        "tenant.update",
        "tenant.update",
        "tenant.create",
    ]
    assert {e["actor_id"] for e in cli("audit", "--json")["data"]} == {"cli"}


def test_plan_commands(cli: Invoke) -> None:
    plan = cli("plans", "create", "--name", "basic", "--tpm", "1000", "--json")
    assert cli("plans", "update", plan["id"], "--name", "basic-2", "--clear", "tpm", "--json")["tpm"] is None
    assert cli("plans", "get", plan["id"], "--json")["name"] == "basic-2"
    tenant = cli("tenants", "create", "--name", "user", "--plan", plan["id"], "--json")
    refused = cli("plans", "delete", plan["id"], expect=1)
    assert "used by 1 tenant" in refused.stderr and refused.stdout == ""
    cli("tenants", "update", tenant["id"], "--clear", "plan_id")
    assert cli("plans", "delete", plan["id"], "--json") == {"id": plan["id"], "object": "plan", "deleted": True}
    assert cli("plans", "list", "--json")["data"] == []


def test_key_commands(cli: Invoke) -> None:
    tenant = cli("tenants", "create", "--name", "keyed", "--json")
    key = cli("keys", "create", "--tenant", tenant["id"], "--name", "main", "--rpm", "9", "--json")
    assert set(key) == {"id", "key", "prefix", "tenant_id"}  # pinned contract
    listed = cli("keys", "list", "--tenant", tenant["id"], "--json")["data"]
    assert [(k["id"], k["name"], k["rpm"], k["status"]) for k in listed] == [(key["id"], "main", 9, "active")]
    assert key["key"] not in json.dumps(listed)
    assert cli("keys", "update", key["id"], "--rpm", "10", "--json")["rpm"] == 10

    rotated = cli("keys", "rotate", key["id"], "--grace-seconds", "60", "--json")
    assert rotated["key"].startswith("tg-") and rotated["previous"]["expires_at"]
    assert (rotated["name"], rotated["rpm"]) == ("main", 10)
    human = cli("keys", "list", "--tenant", tenant["id"])
    assert human.count("main  active") == 2 and "tg-" in human  # prefixes, never the plaintexts
    assert rotated["key"] not in human

    assert cli("keys", "revoke", key["id"], "--json") == {"id": key["id"], "status": "revoked"}
    assert cli("keys", "get", key["id"], "--json")["status"] == "revoked"
    assert [k["id"] for k in cli("keys", "list", "--status", "active", "--json")["data"]] == [rotated["id"]]


def test_token_commands(cli: Invoke) -> None:
    token = cli("tokens", "create", "--name", "finance", "--role", "billing", "--json")
    assert token["token"].startswith("tga-") and token["role"] == "billing"
    listed = cli("tokens", "list", "--json")["data"]
    assert [t["id"] for t in listed] == [token["id"]] and "token" not in listed[0]
    assert cli("tokens", "revoke", token["id"], "--json")["revoked_at"]


def test_errors_are_clean(cli: Invoke) -> None:
    for args in (
        ("tenants", "get", "ten_nope"),
        ("keys", "rotate", "key_nope"),
        ("plans", "update", "plan_nope"),
        ("tokens", "revoke", "adm_nope"),
    ):
        result = cli(*args, "--json", expect=1)
        assert result.stdout == "" and "error: no " in result.stderr
    bad = cli("tenants", "create", "--name", "x", "--rpm", "-5", expect=2)
    assert "rpm: Input should be greater than or equal to 0" in bad.stderr
    clear = cli("tenants", "update", "ten_x", "--clear", "name", expect=2)
    assert "--clear takes one of" in clear.stderr
    cli("tenants", "create", "--name", "dup")
    assert "already exists" in cli("tenants", "create", "--name", "dup", expect=1).stderr
