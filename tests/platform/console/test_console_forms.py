"""The console's forms take what the admin API takes, in headless Chromium against a served gateway: a tenant
created with every limit, a key rotated with the grace period the operator chose, the audit log narrowed to a
tenant picked by name, and the SRE view's time spent waiting charted beside the gateway's work."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.conftest import ADMIN_TOKEN
from tests.platform.console.browsing import MESSAGES, Watched, sample
from tests.support.gateway import Gateway

pytestmark = pytest.mark.slow  # starts a gateway and a browser: `-m 'not slow'` skips it for a quick loop


def _signed_in(gateway: Gateway, browser: Browser, token: str = ADMIN_TOKEN) -> tuple[Watched, Page]:
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(token)
    watched.problems.clear()  # the browser logs the signed-out page's 401 for /console/api/session
    return watched, page


def _manage(page: Page, name: str) -> None:
    page.click("nav a[href='#/tenants']")
    page.fill("#tenant-search input[name=name]", name)
    page.click("#tenant-search button[type=submit]")
    page.locator("#tenant-list tbody tr").filter(has_text=name).get_by_role("button", name="Manage").click()
    expect(page.locator("#tenant-heading")).to_have_text(f"Tenant {name}")


def _tenant_named(gateway: Gateway, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = gateway.admin("GET", "/admin/tenants", params={"name": name}).json()["data"]
    return [tenant for tenant in found if tenant["name"] == name]


def _seconds(shown: str) -> float:
    """A duration as the console shows it ("975 ms", "1.20 s") in seconds."""
    number, unit = shown.split(" ")
    return float(number) * {"µs": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


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


def test_a_key_is_rotated_with_the_grace_period_the_operator_chose(console_gateway: Gateway, browser: Browser) -> None:
    gateway = console_gateway
    tenant = gateway.create_tenant(f"Rotating {uuid.uuid4().hex[:6]}")
    key = gateway.create_key(tenant["id"], name="service")
    watched, page = _signed_in(gateway, browser)
    _manage(page, tenant["name"])
    page.locator("#key-list tbody tr").filter(has_text="service").get_by_role("button", name="Rotate").click()
    rotate = page.locator("#key-rotate")
    expect(rotate.locator("input[name=grace]")).to_be_focused()
    expect(rotate.locator("input[name=grace]")).to_have_value("1")
    expect(rotate.locator("select[name=grace_unit] option:checked")).to_have_text("hours")

    # Past the admin API's 30 days: refused with its message, and the key is left as it was.
    rotate.locator("input[name=grace]").fill("31")
    rotate.locator("select[name=grace_unit]").select_option(label="days")
    rotate.locator("button[type=submit]").click()
    expect(page.locator("#key-rotate-error")).to_contain_text("grace_seconds")
    assert gateway.admin("GET", f"/admin/keys/{key['id']}").json()["expires_at"] is None
    watched.problems.clear()  # the browser logs the refused request's 422

    rotate.locator("input[name=grace]").fill("2")
    rotate.locator("select[name=grace_unit]").select_option(label="hours")
    rotate.locator("button[type=submit]").click()
    expect(page.locator(".once strong")).to_contain_text("the old one works until")
    rotated = page.locator("#shown-secret").input_value()
    old = gateway.admin("GET", f"/admin/keys/{key['id']}").json()
    ends = datetime.fromisoformat(old["expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=2) - timedelta(minutes=1) < ends <= timedelta(hours=2)
    rows = page.locator("#key-list tbody tr").filter(has_text="service")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="rotated, works until")).to_have_count(1)
    for plaintext in (key["key"], rotated):  # both work through the grace period
        gateway.client(plaintext).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    # No grace at all: the key just shown is refused from now on, and the page says so.
    new_row = rows.filter(has_not_text="rotated")
    new_row.get_by_role("button", name="Rotate").click()
    page.locator("#key-rotate input[name=grace]").fill("0")
    page.locator("#key-rotate button[type=submit]").click()
    expect(page.locator(".once strong").last).to_contain_text("the old one is refused from now on")
    with pytest.raises(openai.AuthenticationError):
        gateway.client(rotated).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert watched.problems == []
    watched.close()


def test_a_tenant_rotates_its_own_key_with_a_grace_period_it_chose(console_gateway: Gateway, browser: Browser) -> None:
    gateway = console_gateway
    key = gateway.new_key(f"portal-rotating-{uuid.uuid4().hex[:6]}")
    token = gateway.admin(
        "POST", "/admin/tokens", json={"name": "portal rotation", "role": "tenant", "tenant_id": key["tenant_id"]}
    ).json()["token"]
    watched, page = _signed_in(gateway, browser, token)
    page.locator("#key-list tbody tr").first.get_by_role("button", name="Rotate").click()
    page.locator("#key-rotate input[name=grace]").fill("30")
    page.locator("#key-rotate select[name=grace_unit]").select_option(label="minutes")
    page.locator("#key-rotate button[type=submit]").click()
    expect(page.locator(".once strong")).to_contain_text("the old one works until")
    expect(page.locator("#key-list tbody tr")).to_have_count(2)
    old = gateway.admin("GET", f"/admin/keys/{key['id']}").json()
    ends = datetime.fromisoformat(old["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=29) < ends <= timedelta(minutes=30)
    assert watched.problems == []
    watched.close()


def test_a_rotation_opened_while_the_first_keys_limits_load_is_not_drawn_over(
    console_gateway: Gateway, browser: Browser
) -> None:
    """The portal shows the first key's limits under the keys once read; a rotation the tenant opened meanwhile stays
    (CI once clicked Rotate before that read answered, and the form vanished under the click)."""
    gateway = console_gateway
    key = gateway.new_key(f"portal-slow-{uuid.uuid4().hex[:6]}")
    token = gateway.admin(
        "POST", "/admin/tokens", json={"name": "portal slow limits", "role": "tenant", "tenant_id": key["tenant_id"]}
    ).json()["token"]
    watched = Watched(browser, gateway.url)
    held: list[Route] = []
    watched.page.route("**/console/api/portal/keys/*/limits", lambda route: held.append(route))
    page = watched.sign_in(token)
    watched.problems.clear()
    page.wait_for_function("() => document.querySelector('#key-list') !== null")
    assert len(held) == 1  # the first key's limits, held
    page.locator("#key-list tbody tr").first.get_by_role("button", name="Rotate").click()
    expect(page.locator("#key-rotate")).to_be_visible()
    with page.expect_response(lambda response: response.url.endswith("/limits")):
        held[0].continue_()
    page.unroute("**/console/api/portal/keys/*/limits")
    page.wait_for_load_state("networkidle")
    expect(page.locator("#key-rotate")).to_be_visible()
    expect(page.locator("#key-limits table")).to_have_count(0)
    # And the other way round: limits asked for after the rotation replace it, as the tenant asked.
    page.locator("#key-list tbody tr").first.get_by_role("button", name="Limits").click()
    expect(page.locator("#key-limits table")).to_be_visible()
    expect(page.locator("#key-rotate")).to_have_count(0)
    assert watched.problems == []
    watched.close()


def test_the_audit_log_is_narrowed_to_a_tenant_picked_by_name(console_gateway: Gateway, browser: Browser) -> None:
    gateway = console_gateway
    tag = uuid.uuid4().hex[:6]
    north, south = gateway.create_tenant(f"North {tag}"), gateway.create_tenant(f"South {tag}")
    for tenant in (north, south):
        gateway.admin("PATCH", f"/admin/tenants/{tenant['id']}", json={"rpm": 9})
    watched, page = _signed_in(gateway, browser)
    page.click("nav a[href='#/audit']")
    choice = page.locator("#audit-filter select[name=tenant_id]")
    expect(page.locator("#audit-filter input[name=tenant_id]")).to_have_count(0)  # no raw id to type
    page.fill("#audit-filter input[name=tenant_search]", tag)
    expect(choice.locator("option")).to_have_count(3)  # any tenant, North, South
    choice.select_option(label=north["name"])
    with page.expect_request(lambda request: f"tenant_id={north['id']}" in request.url):
        page.click("#audit-filter button[type=submit]")
    entries = page.locator("#audit-list tbody tr")
    expect(entries).to_have_count(2)  # its creation and its change, none of South's
    expect(entries.filter(has_text="tenant.update")).to_contain_text(north["name"])
    assert south["name"] not in page.locator("#audit-list").inner_text()

    # Away and back: the filter is still that tenant, shown by its name.
    page.click("nav a[href='#/tenants']")
    page.click("nav a[href='#/audit']")
    expect(page.locator("#audit-filter select[name=tenant_id] option:checked")).to_have_text(north["name"])
    expect(page.locator("#audit-list tbody tr")).to_have_count(2)
    choice = page.locator("#audit-filter select[name=tenant_id]")
    choice.select_option(label="any tenant")
    page.click("#audit-filter button[type=submit]")
    expect(page.locator("#audit-list")).to_contain_text(south["name"])
    assert watched.problems == []
    watched.close()


def test_a_view_that_answers_after_another_was_chosen_does_not_replace_it(
    console_gateway: Gateway, browser: Browser
) -> None:
    """The tenants view's first read is held until the audit log is shown: released then, it must not draw the
    tenants page over the audit log (it did: both ended up on the page, the audit filter half-built)."""
    gateway = console_gateway
    tenant = gateway.create_tenant(f"Held {uuid.uuid4().hex[:6]}")
    watched, page = _signed_in(gateway, browser)
    page.click("nav a[href='#/audit']")
    expect(page.locator("#audit-list")).to_be_visible()
    held: list[Route] = []
    page.route("**/admin/plans**", lambda route: held.append(route))
    page.click("nav a[href='#/tenants']")
    page.wait_for_function("() => document.querySelector('main').textContent.includes('loading')")
    assert len(held) == 1  # the tenants view waits on its plans
    page.click("nav a[href='#/audit']")
    expect(page.locator("#audit-list")).to_be_visible()
    with page.expect_response(lambda response: "/admin/tenants?" in response.url):  # the stale view's next read
        held[0].continue_()
    page.unroute("**/admin/plans**")
    page.wait_for_load_state("networkidle")
    expect(page.locator("#audit-list")).to_be_visible()
    expect(page.locator("main h1")).to_have_count(1)
    expect(page.locator("main h1")).to_have_text("Audit log")
    expect(page.locator("#tenant-list")).to_have_count(0)
    # The view shown works: its tenant filter lists the tenant by name.
    page.fill("#audit-filter input[name=tenant_search]", tenant["name"])
    expect(page.locator("#audit-filter select[name=tenant_id] option")).to_have_count(2)
    assert watched.problems == []
    watched.close()


def test_the_sre_view_charts_time_spent_waiting_beside_the_gateways_work(
    console_gateway: Gateway, browser: Browser
) -> None:
    gateway = console_gateway
    key = gateway.new_key(f"waiting-{uuid.uuid4().hex[:6]}")
    with pytest.raises(openai.RateLimitError):  # the upstream asks for 300 ms between attempts: the gateway waits
        gateway.client(key["key"]).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"x-dev-fail": "429", "x-dev-retry-after-ms": "300"},
        )
    sample(gateway)
    watched, page = _signed_in(gateway, browser)
    overhead = page.locator("#chart-overhead")
    expect(overhead.locator("figcaption")).to_have_text("Gateway overhead, upstream time and waiting (p50, p95)")
    summary = overhead.locator(".chart-summary")
    expect(summary).to_contain_text("waiting p95:")
    parts = dict(part.split(": ") for part in summary.inner_text().split(" · "))
    assert _seconds(parts["waiting p95"]) >= 0.25, parts  # the backoff, as the console formats it
    assert parts["gateway p95"] != "\u2013"  # the dash of "no number"
    expect(overhead.locator(".chart-note")).to_contain_text("backoff between retries")
    expect(overhead.locator("canvas")).to_have_count(1)
    watched.shot("sre-overhead")
    assert watched.problems == []
    watched.close()
