"""The console's forms take what the admin API takes, in headless Chromium against a served gateway: a tenant
created with every limit."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import ADMIN_TOKEN
from tests.platform.console.browsing import Watched
from tests.support.gateway import Gateway

pytestmark = pytest.mark.slow  # starts a gateway and a browser: `-m 'not slow'` skips it for a quick loop


def _signed_in(gateway: Gateway, browser: Browser) -> tuple[Watched, Page]:
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(ADMIN_TOKEN)
    watched.problems.clear()  # the browser logs the signed-out page's 401 for /console/api/session
    return watched, page


def _tenant_named(gateway: Gateway, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = gateway.admin("GET", "/admin/tenants", params={"name": name}).json()["data"]
    return [tenant for tenant in found if tenant["name"] == name]


def test_a_new_tenant_takes_every_limit_the_admin_api_takes(console_gateway: Gateway, browser: Browser) -> None:
    gateway = console_gateway
    suffix = uuid.uuid4().hex[:6]
    plan = gateway.admin("POST", "/admin/plans", json={"name": f"silver {suffix}", "rpm": 10}).json()
    watched, page = _signed_in(gateway, browser)
    page.click("nav a[href='#/tenants']")
    name = f"Fully Limited {suffix}"
    create = page.locator("#tenant-create")
    create.locator("input[name=name]").fill(name)
    create.locator("select[name=plan_id]").select_option(label=plan["name"])
    typed = {
        "rpm": "120", "tpm": "40000", "rpd": "5000", "max_concurrency": "4", "allowed_models": "gpt-4o-mini, gpt-4o",
        "monthly_token_quota": "2000000", "monthly_budget_usd": "25.5", "batch_queue_tokens": "100000",
        "fair_share_weight": "0",
    }  # fmt: skip
    for field, value in typed.items():
        create.locator(f"input[name={field}]").fill(value)

    # A weight of 0 is below the admin API's bound: its own message, under the form, which keeps what was typed.
    create.locator("button[type=submit]").click()
    expect(page.locator("#tenant-create-error")).to_contain_text("fair_share_weight")
    expect(create.locator("input[name=tpm]")).to_have_value("40000")
    assert _tenant_named(gateway, name) == []
    watched.problems.clear()  # the browser logs the refused request's 422

    create.locator("input[name=fair_share_weight]").fill("3")
    create.locator("button[type=submit]").click()
    expect(page.locator("#tenant-heading")).to_have_text(f"Tenant {name}")
    [tenant] = _tenant_named(gateway, name)
    held = {field: tenant[field] for field in typed} | {"plan_id": tenant["plan_id"]}
    assert held == {
        "rpm": 120, "tpm": 40000, "rpd": 5000, "max_concurrency": 4, "allowed_models": ["gpt-4o", "gpt-4o-mini"],
        "monthly_token_quota": 2000000, "monthly_budget_usd": 25.5, "batch_queue_tokens": 100000,
        "fair_share_weight": 3, "plan_id": plan["id"],
    }  # fmt: skip
    # The tenant's page shows what was saved, and a key of it is held to the tenant's limits, not the plan's.
    expect(page.locator("#tenant-limits input[name=tpm]")).to_have_value("40000")
    expect(page.locator("#tenant-limits input[name=fair_share_weight]")).to_have_value("3")
    key = gateway.create_key(tenant["id"])
    limits = gateway.admin("GET", f"/admin/keys/{key['id']}/limits").json()["limits"]["tenant"]
    assert limits["requests_per_minute"]["limit"] == 120
    assert watched.problems == []
    watched.close()
