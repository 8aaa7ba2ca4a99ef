"""Billing exports: incremental event sync, CSV of a tenant's period, invoice summaries, `tenantgate usage`."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from typer.testing import CliRunner

from tenantgate.cli import app
from tests.conftest import SECRET_KEY
from tests.support.gateway import Gateway
from tests.support.metering import make_event, seed

NOV_1 = 1_793_491_200  # 2026-11-01 00:00 UTC
DEC_1 = 1_796_083_200


def _page(gateway: Gateway, **params: Any) -> dict[str, Any]:
    response = gateway.admin("GET", "/admin/usage/events", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def test_incremental_sync_sees_every_event_once_even_late_ones(gateway: Gateway, database_url: str) -> None:
    tenant = gateway.new_key("alpha")["tenant_id"]
    first = [make_event(tenant_id=tenant, occurred_at=NOV_1 + 3600 * i) for i in range(5)]
    seed(database_url, first)
    page = _page(gateway, tenant_id=tenant, limit=3)
    assert [e["id"] for e in page["data"]] == [e["id"] for e in first[:3]] and page["has_more"]
    page = _page(gateway, tenant_id=tenant, limit=3, after=page["next_cursor"])
    assert [e["id"] for e in page["data"]] == [e["id"] for e in first[3:]] and not page["has_more"]
    cursor = page["next_cursor"]
    assert _page(gateway, tenant_id=tenant, after=cursor)["data"] == []

    # An event that happened before the others but reached the database later (an outage) is still synced;
    # a replay of one already synced is not delivered again.
    late = make_event(tenant_id=tenant, occurred_at=NOV_1 - 60)
    seed(database_url, [late, first[0]])
    page = _page(gateway, tenant_id=tenant, after=cursor)
    assert [e["id"] for e in page["data"]] == [late["id"]]
    assert page["data"][0]["cost_usd"] == "0.000004500"  # (10 in x 0.15 + 5 out x 0.60) / 1M


def test_bad_cursor_is_400(gateway: Gateway) -> None:
    response = gateway.admin("GET", "/admin/usage/events", params={"after": "!!"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "after"


def test_csv_of_a_tenants_month(gateway: Gateway, database_url: str) -> None:
    mine, other = gateway.new_key("alpha")["tenant_id"], gateway.new_key("beta")["tenant_id"]
    inside = [make_event(tenant_id=mine, occurred_at=NOV_1 + i * 86400, input_tokens=i + 1) for i in range(3)]
    seed(
        database_url,
        [*inside, make_event(tenant_id=mine, occurred_at=DEC_1), make_event(tenant_id=other, occurred_at=NOV_1 + 5)],
    )
    response = gateway.admin("GET", "/admin/usage/export.csv", params={"tenant_id": mine, "period": "2026-11"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["id"] for r in rows] == [e["id"] for e in inside]
    assert [int(r["input_tokens"]) for r in rows] == [1, 2, 3]
    assert rows[0]["occurred_at"] == "2026-11-01T00:00:00.000Z" and rows[0]["price_version"] == "2026-11-01"


def _month_events(tenant: str) -> list[dict[str, Any]]:
    return [
        make_event(tenant_id=tenant, occurred_at=NOV_1 + 100, model="gpt-4o-mini", input_tokens=1000),
        make_event(tenant_id=tenant, occurred_at=DEC_1 - 100, model="gpt-4o-mini", input_tokens=1000),
        make_event(
            tenant_id=tenant,
            occurred_at=NOV_1 + 86400 * 10 + 1,
            model="text-embedding-3-small",
            response_model="text-embedding-3-small",
            category="embeddings",
            input_tokens=500,
            output_tokens=0,
        ),
        make_event(tenant_id=tenant, occurred_at=DEC_1 + 1, input_tokens=99),  # next month
    ]


def test_invoice_summary_per_tenant_by_model(gateway: Gateway, database_url: str) -> None:
    created = gateway.new_key("invoiced")
    tenant = created["tenant_id"]
    seed(database_url, _month_events(tenant))
    response = gateway.admin("GET", "/admin/usage/invoices", params={"period": "2026-11", "tenant_id": tenant})
    assert response.status_code == 200, response.text
    (invoice,) = response.json()["data"]
    assert (invoice["tenant_id"], invoice["period_start"], invoice["period_end"]) == (tenant, NOV_1, DEC_1)
    assert invoice["tenant_name"].startswith("invoiced-")
    lines = {line["model"]: line for line in invoice["lines"]}
    assert (lines["gpt-4o-mini"]["requests"], lines["gpt-4o-mini"]["input_tokens"]) == (2, 2000)
    assert lines["gpt-4o-mini"]["cost_usd"] == "0.000306000"  # 2 x (1000 x 0.15 + 5 x 0.60) / 1e6
    assert lines["text-embedding-3-small"]["cost_usd"] == "0.000010000"  # 500 x 0.02 / 1e6
    assert invoice["total"]["cost_usd"] == "0.000316000" and invoice["total"]["requests"] == 3


def test_cli_usage_json(gateway: Gateway, database_url: str) -> None:
    tenant = gateway.new_key("cli")["tenant_id"]
    seed(database_url, _month_events(tenant))
    env = {"TENANTGATE_DATABASE_URL": database_url, "TENANTGATE_SECRET_KEY": SECRET_KEY, "TENANTGATE_ENV": "production"}
    result = CliRunner().invoke(app, ["usage", "--period", "2026-11", "--tenant", tenant, "--json"], env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["period_start"], summary["period_end"]) == (NOV_1, DEC_1)
    (invoice,) = summary["data"]
    assert invoice["total"]["cost_usd"] == "0.000316000"
    human = CliRunner().invoke(app, ["usage", "--start", "2026-11-01", "--end", "2026-12-01"], env=env)
    assert human.exit_code == 0 and tenant in human.stdout and "0.000316000" in human.stdout
    bad = CliRunner().invoke(app, ["usage", "--period", "November"], env=env)
    assert bad.exit_code == 2


def test_billing_role_reads_exports_and_the_usage_api(gateway: Gateway, database_url: str) -> None:
    tenant = gateway.new_key("billed")["tenant_id"]
    seed(database_url, _month_events(tenant))
    created = gateway.admin("POST", "/admin/tokens", json={"name": "finance", "role": "billing"})
    assert created.status_code == 201, created.text
    billing = {"Authorization": f"Bearer {created.json()['token']}"}
    csv_all = gateway.admin("GET", "/admin/usage/export.csv", params={"period": "2026-11"}, headers=billing)
    assert csv_all.status_code == 200 and tenant in csv_all.text
    invoices = gateway.admin("GET", "/admin/usage/invoices", params={"period": "2026-11"}, headers=billing)
    assert tenant in {i["tenant_id"] for i in invoices.json()["data"]}
    usage = gateway.admin(
        "GET",
        "/v1/organization/usage/completions",
        params={"start_time": NOV_1, "end_time": DEC_1 + 86400, "limit": 31, "project_ids": tenant},
        headers=billing,
    )
    assert usage.status_code == 200
    assert sum(r["num_model_requests"] for b in usage.json()["data"] for r in b["results"]) == 3
