"""Price overrides through the admin API: round trip, audit, roles, validation, and what they do to costs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import Gateway
from tests.support.metering import admin_sdk, all_events, flush

MESSAGES = [{"role": "user", "content": "How much does this cost?"}]


def _price(gateway: Gateway, **body: Any) -> dict[str, Any]:
    response = gateway.admin("POST", "/admin/prices", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    return error


def _events(gateway: Gateway, tenant_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        flush(gateway)
        events = all_events(gateway, tenant_id=tenant_id)
        if len(events) >= count or time.monotonic() > deadline:
            return sorted(events, key=lambda e: e["occurred_at"])
        time.sleep(0.05)


def _usd(tokens_in: int, tokens_out: int, input_per_1m: str, output_per_1m: str) -> Decimal:
    return (tokens_in * Decimal(input_per_1m) + tokens_out * Decimal(output_per_1m)) / 1_000_000


def test_round_trip_for_every_scope_with_audit(gateway: Gateway) -> None:
    plan = gateway.admin("POST", "/admin/plans", json={"name": f"gold-{uuid.uuid4().hex[:8]}"}).json()
    tenant = gateway.create_tenant(f"priced-{uuid.uuid4().hex[:8]}")
    model = f"m-{uuid.uuid4().hex[:8]}"
    everyone = _price(gateway, model=model, input_per_1m=0.1, output_per_1m="0.40")
    on_plan = _price(gateway, model=model, input_per_1m="1e1", output_per_1m=20, plan_id=plan["id"])
    later = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    for_tenant = _price(
        gateway,
        model=model,
        input_per_1m="2.5",
        cached_input_per_1m="1.25",
        output_per_1m="10",
        tenant_id=tenant["id"],
        effective_from=later.isoformat(),
    )

    assert everyone["id"].startswith("po_") and everyone["object"] == "price_override"
    assert (everyone["scope"], everyone["tenant_id"], everyone["plan_id"]) == ("global", None, None)
    # Prices come back as the exact decimals that were sent (floats included), in USD per 1M tokens.
    assert (everyone["input_per_1m"], everyone["output_per_1m"], everyone["cached_input_per_1m"]) == (
        "0.1",
        "0.4",
        None,
    )
    assert (on_plan["scope"], on_plan["plan_id"], on_plan["input_per_1m"]) == ("plan", plan["id"], "10")
    assert (for_tenant["scope"], for_tenant["tenant_id"], for_tenant["cached_input_per_1m"]) == (
        "tenant",
        tenant["id"],
        "1.25",
    )
    assert datetime.fromisoformat(for_tenant["effective_from"]) == later
    assert abs(datetime.fromisoformat(everyone["effective_from"]) - datetime.now(UTC)) < timedelta(seconds=30)

    assert gateway.admin("GET", f"/admin/prices/{on_plan['id']}").json() == on_plan
    listed = gateway.admin("GET", "/admin/prices", params={"model": model}).json()
    assert [p["id"] for p in listed["data"]] == [for_tenant["id"], on_plan["id"], everyone["id"]]  # newest first
    assert listed["data"][0] == for_tenant
    for params, expected in (
        ({"scope": "global"}, everyone),
        ({"scope": "plan"}, on_plan),
        ({"scope": "tenant"}, for_tenant),
        ({"tenant_id": tenant["id"]}, for_tenant),
        ({"plan_id": plan["id"]}, on_plan),
    ):
        page = gateway.admin("GET", "/admin/prices", params={"model": model, **params}).json()
        assert [p["id"] for p in page["data"]] == [expected["id"]], params
    first = gateway.admin("GET", "/admin/prices", params={"model": model, "limit": 2}).json()
    rest = gateway.admin("GET", "/admin/prices", params={"model": model, "after": first["last_id"]}).json()
    assert first["has_more"] and [p["id"] for p in rest["data"]] == [everyone["id"]]

    deleted = gateway.admin("DELETE", f"/admin/prices/{on_plan['id']}")
    assert deleted.json() == {"id": on_plan["id"], "object": "price_override", "deleted": True}
    assert _error(gateway.admin("GET", f"/admin/prices/{on_plan['id']}"), 404)["code"] == "price_override_not_found"
    assert _error(gateway.admin("DELETE", f"/admin/prices/{on_plan['id']}"), 404)["code"] == "price_override_not_found"

    audit = gateway.admin("GET", "/admin/audit", params={"target_type": "price_override"}).json()["data"]
    mine = [e for e in audit if e["target_id"] in (everyone["id"], on_plan["id"], for_tenant["id"])]
    assert [(e["action"], e["target_id"]) for e in mine] == [
        ("price_override.delete", on_plan["id"]),
        ("price_override.create", for_tenant["id"]),
        ("price_override.create", on_plan["id"]),
        ("price_override.create", everyone["id"]),
    ]
    assert all(e["actor_id"] == "bootstrap" for e in mine)
    delete_entry, tenant_entry = mine[0], mine[1]
    assert delete_entry["after"] is None and delete_entry["before"]["plan_id"] == plan["id"]
    assert delete_entry["before"]["input_per_1m"] == "10" and delete_entry["before"]["model"] == model
    assert tenant_entry["tenant_id"] == tenant["id"] and tenant_entry["after"]["cached_input_per_1m"] == "1.25"


def test_costs_use_an_override_for_events_after_it_takes_effect(gateway: Gateway) -> None:
    created = gateway.new_key("costed")
    tenant_id, client = created["tenant_id"], gateway.client(created["key"])
    book = gateway.runtime.metering.prices
    table_price, table_version = book.price_for("gpt-4o-mini")
    started = int(time.time())

    before = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert _events(gateway, tenant_id, 1)
    override = _price(gateway, model="gpt-4o-mini", input_per_1m="100", output_per_1m="300", tenant_id=tenant_id)
    # A later price for the same tenant and model does not apply before its time.
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    _price(
        gateway,
        model="gpt-4o-mini",
        input_per_1m="9000",
        output_per_1m="9000",
        tenant_id=tenant_id,
        effective_from=later,
    )
    after = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    # Another tenant keeps the table's price.
    bystander = gateway.new_key("bystander")
    gateway.client(bystander["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    first, second = _events(gateway, tenant_id, 2)
    assert before.usage is not None and after.usage is not None
    assert first["price_version"] == table_version
    assert Decimal(first["cost_usd"]) == _usd(
        before.usage.prompt_tokens, before.usage.completion_tokens, str(table_price.input), str(table_price.output)
    )
    assert second["price_version"] == f"{table_version}+{override['id']}"
    expected = _usd(after.usage.prompt_tokens, after.usage.completion_tokens, "100", "300")
    assert Decimal(second["cost_usd"]) == expected > 0
    (other,) = _events(gateway, bystander["tenant_id"], 1)
    assert other["price_version"] == table_version

    costs = admin_sdk(gateway).admin.organization.usage.costs(
        start_time=started - 60, end_time=int(time.time()) + 60, project_ids=[tenant_id]
    )
    total = sum(r.amount.value or 0 for bucket in costs.data for r in bucket.results if r.amount)
    assert total == pytest.approx(float(Decimal(first["cost_usd"]) + expected), rel=1e-9)


def test_budget_is_charged_at_the_override_price(gateway: Gateway) -> None:
    tenant = gateway.create_tenant(f"budget-{uuid.uuid4().hex[:8]}", monthly_budget_usd="0.25")
    key = gateway.create_key(tenant["id"])["key"]
    override = _price(gateway, model="gpt-4o-mini", input_per_1m="5000", output_per_1m="5000", tenant_id=tenant["id"])
    # The process that took the change prices with it from the response on.
    version = gateway.runtime.metering.prices.price_for("gpt-4o-mini", tenant_id=tenant["id"])[1]
    assert version.endswith("+" + override["id"])
    client = gateway.client(key)
    # It holds its worst case at the override price while it runs: (prompt + 20 tokens) x $0.005, under $0.25.
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
    assert completion.usage is not None
    expected = _usd(completion.usage.prompt_tokens, completion.usage.completion_tokens, "5000", "5000")
    assert expected > Decimal("0.1")  # at the table's price this request would cost a few millionths

    def spent() -> float:
        me = httpx.get(gateway.base_url + "/me", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
        return float(me["limits"]["tenant"]["monthly_budget_usd"]["spent"])

    deadline = time.monotonic() + 5
    while spent() == 0 and time.monotonic() < deadline:  # settlement lands in the background
        time.sleep(0.02)
    assert spent() == pytest.approx(float(expected), abs=1e-6)
    with pytest.raises(openai.RateLimitError) as refused:  # spent + another such worst case > $0.25
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
    assert refused.value.code == "insufficient_quota"


def test_billing_token_reads_prices_but_cannot_change_them(gateway: Gateway) -> None:
    token = gateway.admin("POST", "/admin/tokens", json={"name": "accounts", "role": "billing"}).json()["token"]
    billing = {"Authorization": f"Bearer {token}"}
    existing = _price(gateway, model="gpt-4o", input_per_1m="2", output_per_1m="8")
    assert gateway.admin("GET", "/admin/prices", headers=billing).json()["data"][0]["id"] == existing["id"]
    assert gateway.admin("GET", f"/admin/prices/{existing['id']}", headers=billing).json() == existing
    body = {"model": "gpt-4o", "input_per_1m": "0", "output_per_1m": "0"}
    create = gateway.admin("POST", "/admin/prices", headers=billing, json=body)
    assert _error(create, 403)["code"] == "insufficient_role"
    delete = gateway.admin("DELETE", f"/admin/prices/{existing['id']}", headers=billing)
    assert _error(delete, 403)["code"] == "insufficient_role"
    assert [p["id"] for p in gateway.admin("GET", "/admin/prices").json()["data"]] == [existing["id"]]


def test_bad_input_is_refused_in_openais_shape_and_nothing_is_stored(gateway: Gateway) -> None:
    tenant = gateway.create_tenant(f"bad-{uuid.uuid4().hex[:8]}")
    gone = gateway.create_tenant(f"gone-{uuid.uuid4().hex[:8]}")
    gateway.admin("DELETE", f"/admin/tenants/{gone['id']}")
    ok = {"model": "gpt-4o-mini", "input_per_1m": "1", "output_per_1m": "2"}
    schema_errors = [
        ({"input_per_1m": "-0.01"}, "input_per_1m", "greater than or equal to 0"),
        ({"output_per_1m": 10_001}, "output_per_1m", "less than or equal to 10000"),
        ({"input_per_1m": "150000000"}, "input_per_1m", "less than or equal to 10000"),  # nano-USD by mistake
        ({"input_per_1m": "0.0000001"}, "input_per_1m", "6 decimal places"),
        ({"input_per_1m": "NaN"}, "input_per_1m", "finite"),
        ({"input_per_1m": "Infinity"}, "input_per_1m", "finite"),
        ({"cached_input_per_1m": "lots"}, "cached_input_per_1m", "decimal"),
        ({"input_per_1m": True}, "input_per_1m", ""),
        ({"model": ""}, "model", "at least 1 character"),
        ({"model": "gpt\u0000"}, None, "NUL"),
        ({"effective_from": "next tuesday"}, "effective_from", "datetime"),
        ({"effective_from": "0001-01-01T00:00:00+14:00"}, "effective_from", "out of range"),
        ({"unit": "per_token"}, "unit", "Extra inputs"),
    ]
    for change, param, message in schema_errors:
        error = _error(gateway.admin("POST", "/admin/prices", json=ok | change), 422)
        assert error["param"] == param and message in error["message"], (change, error)
    error = _error(gateway.admin("POST", "/admin/prices", json={"model": "x", "input_per_1m": "1"}), 422)
    assert error["param"] == "output_per_1m"
    assert _error(gateway.admin("POST", "/admin/prices", content=b"{not json"), 422)

    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    domain_errors = [
        ({"effective_from": past}, 400, "effective_from", "effective_from_in_past"),
        ({"tenant_id": tenant["id"], "plan_id": "plan_x"}, 400, "plan_id", "invalid_scope"),
        ({"tenant_id": "ten_missing"}, 404, "tenant_id", "tenant_not_found"),
        ({"plan_id": "plan_missing"}, 404, "plan_id", "plan_not_found"),
        ({"tenant_id": gone["id"]}, 409, None, "tenant_deleted"),
    ]
    for change, status, param, code in domain_errors:
        error = _error(gateway.admin("POST", "/admin/prices", json=ok | change), status)
        assert (error["param"], error["code"]) == (param, code), change
    assert _error(gateway.admin("GET", "/admin/prices", params={"scope": "everyone"}), 422)["param"] == "scope"
    assert gateway.admin("GET", "/admin/prices").json()["data"] == []
    assert gateway.admin("GET", "/admin/audit", params={"target_type": "price_override"}).json()["data"] == []


def test_other_processes_use_a_new_price_within_a_second_through_redis(
    gateway_factory: Callable[..., Gateway], postgres_url: str, dev_upstream: str, redis_url: str, redis_prefix: str
) -> None:
    shared = {"database_url": postgres_url, "upstream_base_url": dev_upstream, "redis_url": redis_url}
    one = gateway_factory(**shared, redis_prefix=redis_prefix)
    other = gateway_factory(**shared, redis_prefix=redis_prefix)
    deadline = time.monotonic() + 5
    while not other.runtime.invalidation.subscribed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert other.runtime.invalidation.subscribed
    flush(other)  # its periodic reload has just run: only the message can make it reload within 30 s
    tenant = one.create_tenant(f"spread-{uuid.uuid4().hex[:8]}")
    override = _price(one, model="gpt-4o-mini", input_per_1m="42", output_per_1m="42", tenant_id=tenant["id"])

    def version() -> str:
        return other.runtime.metering.prices.price_for("gpt-4o-mini", tenant_id=tenant["id"])[1]

    deadline = time.monotonic() + 5
    while not version().endswith(override["id"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert version().endswith(override["id"])

    one.admin("DELETE", f"/admin/prices/{override['id']}")
    deadline = time.monotonic() + 5
    while version().endswith(override["id"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "+" not in version()
