"""The console in a real headless Chromium (Debian's ``chromium``, driven by Playwright) against a served gateway.

One gateway and one browser for the module; each test signs in its own browser context (a fresh cookie jar) and
works on tenants it creates, so the tests do not depend on each other's leftovers. Screenshots land in
build/test-artifacts/console-*.png (docs/images/ has copies for the documentation).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import openai
import pytest
from playwright.sync_api import Browser, Route, expect

from tests.conftest import ADMIN_TOKEN
from tests.platform.console.browsing import CHROMIUM_ARGS, MESSAGES, Watched, chromium, drain_metering, sample
from tests.support.gateway import Gateway

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop


def _traffic(gateway: Gateway) -> tuple[dict[str, str], dict[str, str]]:
    """Two tenants with names: one answered, failed and upstream-throttled requests, the other refused by its
    limit (429)."""
    suffix = uuid.uuid4().hex[:6]
    busy = gateway.create_tenant(f"Busy Corp {suffix}")
    limited = gateway.create_tenant(f"Limited Ltd {suffix}", rpm=1)
    busy_key = gateway.create_key(busy["id"])
    limited_key = gateway.create_key(limited["id"])
    client = gateway.client(busy_key["key"])
    for _ in range(4):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-dev-fail": "500"})
    with pytest.raises(openai.RateLimitError):  # the upstream's own 429: not one of the gateway's limits
        gateway.client(busy_key["key"], max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-dev-fail": "429", "x-dev-retry-after-ms": "1"}
        )
    refused = gateway.client(limited_key["key"])
    refused.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    for _ in range(3):
        with pytest.raises(openai.RateLimitError):
            refused.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    sample(gateway)
    drain_metering(gateway)
    return busy, limited


def test_sre_view_charts_traffic_with_429s_apart_from_errors(console_gateway: Gateway, browser: Browser) -> None:
    gateway = console_gateway
    busy, limited = _traffic(gateway)
    watched = Watched(browser, gateway.url)
    page = watched.page
    response = page.goto(gateway.url + "/console")
    assert response is not None
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    expect(page.locator("#insecure-origin")).to_have_count(0)  # http://127.0.0.1 is a secure context
    page.fill("#token", "tga-not-a-token")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#sign-in-form-error")).to_have_text("Invalid admin token.")
    watched.problems.clear()  # the refused sign-in's 401 is logged by the browser as a failed load

    page.fill("#token", ADMIN_TOKEN)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#who")).to_have_text("bootstrap (admin)")
    cookie = next(c for c in watched.context.cookies() if c["name"].startswith("__Host-"))
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # scripts never see the session

    # Tenants by name; a 500 counts as an error, the three 429s do not, and the upstream's 429 is not a limit's.
    tenants = page.locator("#tenants tbody tr")
    busy_row = tenants.filter(has_text=busy["name"])
    expect(busy_row).to_have_count(1)
    cells = busy_row.locator("td").all_inner_texts()
    assert cells[1:5] == ["7", "1", "0", "1"]  # requests, 5xx, 429 by the gateway's limits, 429 from upstreams
    limited_cells = tenants.filter(has_text=limited["name"]).locator("td").all_inner_texts()
    assert limited_cells[1:5] == ["4", "0", "3", "0"]
    expect(page.locator("#card-errors small")).to_contain_text("5xx")
    expect(page.locator("#card-limited h3")).to_have_text("Refused by limits (429)")
    expect(page.locator("#card-limited .value")).not_to_have_text("0")
    expect(page.locator("#card-limited small")).to_contain_text("upstream 429s apart")
    expect(page.locator("#chart-requests")).to_contain_text("429 from upstreams")
    # Costs keep their significant digits: a few dev requests cost a fraction of a cent, never "$0.0000".
    cost = busy_row.locator("td").nth(7).inner_text()
    assert cost.startswith("$0.0000") and cost.rstrip("0") != "$0." and len(cost) > 7, cost
    for chart in ("chart-requests", "chart-latency", "chart-overhead", "chart-cost", "chart-limiter", "chart-metering"):
        expect(page.locator(f"#{chart}")).to_be_visible()
    expect(page.locator("#chart-requests canvas")).to_have_count(1)
    # The console's own routes are not the gateway's traffic.
    routes = page.locator("#routes").inner_text()
    assert "/v1/chat/completions" in routes and "/console" not in routes and "/dashboard" not in routes

    # Drill down to one tenant by its name: the other tenant's rows go.
    page.select_option("#drill-tenant", label=limited["name"])
    expect(page.locator("#tenants tbody tr")).to_have_count(1)
    expect(page.locator("#tenants tbody tr").first).to_contain_text(limited["name"])
    page.select_option("#drill-tenant", value="")
    expect(page.locator("#tenants tbody tr").filter(has_text=busy["name"])).to_have_count(1)

    # One key: its numbers come from the usage ledger, and the cards say so (metrics are on, just not per key).
    key_id = page.locator("#drill-key option").nth(1).get_attribute("value")
    assert key_id
    page.select_option("#drill-key", value=key_id)
    expect(page.locator("#card-requests small")).to_contain_text("usage ledger")
    expect(page.locator("#card-requests .value")).not_to_have_text("\u2013")  # the dash of "no number"
    assert "metrics" not in page.locator(".cards").inner_text()
    page.select_option("#drill-key", value="")
    page.click("button[data-window='15m']")
    expect(page.locator("button[data-window='15m']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#tenants tbody tr").filter(has_text=busy["name"])).to_have_count(1)
    watched.shot("sre")
    assert watched.problems == []
    watched.close()


def test_the_sre_windows_and_drill_down_are_kept_in_the_link(console_gateway: Gateway, browser: Browser) -> None:
    gateway = console_gateway
    _, limited = _traffic(gateway)
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(ADMIN_TOKEN)
    watched.problems.clear()  # the browser logs the signed-out page's 401 for /console/api/session
    page.select_option("#drill-tenant", label=limited["name"])
    page.click("button[data-window='15m']")
    expect(page).to_have_url(f"{gateway.url}/console#/sre?window=15m&tenant={limited['id']}")
    page.reload()  # the same view after a reload
    expect(page.locator("button[data-window='15m']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#drill-tenant")).to_have_value(limited["id"])
    expect(page.locator("#tenants tbody tr")).to_have_count(1)
    link = page.url
    page.click("nav a[href='#/tenants']")
    page.click("nav a[href='#/sre']")  # back through the menu: still the chosen view
    expect(page).to_have_url(link)
    assert watched.problems == []
    watched.close()

    # Someone opening the link signs in and lands on the same view.
    other = Watched(browser, gateway.url)
    page = other.page
    page.goto(f"{gateway.url}/console#/sre?window=24h&tenant={limited['id']}")
    page.fill("#token", ADMIN_TOKEN)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("button[data-window='24h']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#drill-tenant")).to_have_value(limited["id"])
    expect(page.locator("#tenants tbody tr").first).to_contain_text(limited["name"])
    other.close()


def test_operator_manages_tenants_and_keys_through_the_admin_api(console_gateway: Gateway, browser: Browser) -> None:
    gateway = console_gateway
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(ADMIN_TOKEN)
    page.click("nav a[href='#/tenants']")
    name = f"Console Tenant {uuid.uuid4().hex[:6]}"
    page.fill("#tenant-create input[name=name]", name)
    page.click("#tenant-create button[type=submit]")
    expect(page.locator("#tenant-heading")).to_have_text(f"Tenant {name}")

    # The admin API's validation, shown as it answered: a second tenant of that name is refused.
    page.fill("#tenant-create input[name=name]", name)
    page.click("#tenant-create button[type=submit]")
    expect(page.locator("#tenant-create-error")).to_contain_text("already")
    watched.problems.clear()

    page.fill("#key-create input[name=name]", "from the console")
    page.click("#key-create button[type=submit]")
    secret = page.locator("#shown-secret")
    expect(secret).to_be_visible()
    plaintext = secret.input_value()
    assert plaintext.startswith("tg-")
    watched.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click(".once button.copy")
    assert page.evaluate("navigator.clipboard.readText()") == plaintext
    watched.shot("operator")
    answer = gateway.client(plaintext).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.choices[0].message.content

    row = page.locator("#key-list tbody tr").filter(has_text="from the console")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#key-list tbody tr").filter(has_text="from the console")).to_contain_text("revoked")
    with pytest.raises(openai.AuthenticationError):
        gateway.client(plaintext).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    # A BYOK key is accepted and never shown back.
    page.fill("#upstream-key-set input[name=upstream]", "default")
    page.fill("#upstream-key-set input[name=api_key]", "sk-tenant-own-secret-123")
    page.click("#upstream-key-set button[type=submit]")
    expect(page.locator("#upstream-key-list tbody tr").filter(has_text="default")).to_have_count(1)
    assert "sk-tenant-own-secret-123" not in page.content()

    # Every change went through the admin API, so the audit log has them with the console's actor.
    page.click("nav a[href='#/audit']")
    audit = page.locator("#audit-list")
    expect(audit).to_contain_text("key.revoke")
    expect(audit).to_contain_text("bootstrap (admin)")
    assert watched.problems == []
    watched.close()


def test_billing_role_reads_usage_and_downloads_csv_but_cannot_change_anything(
    console_gateway: Gateway, browser: Browser
) -> None:
    gateway = console_gateway
    tenant = gateway.create_tenant(f"Billed {uuid.uuid4().hex[:6]}")
    key = gateway.create_key(tenant["id"])
    gateway.client(key["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    drain_metering(gateway)
    token = gateway.admin("POST", "/admin/tokens", json={"name": "finance", "role": "billing"}).json()["token"]
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(token)
    nav = page.locator("nav").inner_text()
    assert "Usage and costs" in nav and "Tenants" not in nav and "Admin tokens" not in nav
    page.click("nav a[href='#/billing']")
    invoice = page.locator("#invoices tbody tr").filter(has_text=f"{tenant['name']} total")
    expect(invoice).to_have_count(1)
    assert invoice.locator("td").nth(2).inner_text() == "1"
    assert invoice.locator("td").nth(5).inner_text().startswith("$0.00000")  # not rounded away
    expect(page.locator("#card-month-cost .value")).not_to_have_text("$0")
    with page.expect_download() as download:
        page.click("#csv-download")
    csv = Path(download.value.path()).read_text()
    assert csv.startswith("id,request_id,") and key["id"] in csv
    watched.shot("billing")

    # The server refuses a billing session's writes, whatever the page shows.
    csrf = page.evaluate("fetch('/console/api/session').then(r => r.json()).then(b => b.csrf_token)")
    status = page.evaluate(
        """([csrf]) => fetch('/admin/tenants', {method: 'POST', headers: {'Content-Type': 'application/json',
        'X-CSRF-Token': csrf}, body: JSON.stringify({name: 'sneaky'})}).then(r => r.status)""",
        [csrf],
    )
    assert status == 403
    watched.problems.clear()
    watched.close()


def test_tenant_portal_shows_its_own_usage_and_keys_and_nothing_of_another_tenant(
    console_gateway: Gateway, browser: Browser
) -> None:
    gateway = console_gateway
    mine, other = gateway.new_key("portal-mine"), gateway.new_key("portal-other")
    for key in (mine, other, other):
        gateway.client(key["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    drain_metering(gateway)
    created = gateway.admin(
        "POST", "/admin/tokens", json={"name": "portal", "role": "tenant", "tenant_id": mine["tenant_id"]}
    )
    assert created.status_code == 201, created.text
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(created.json()["token"])
    assert page.locator("nav").inner_text().strip() == "My usage and keys"
    expect(page.locator("#card-requests .value")).to_have_text("1")
    expect(page.locator("#key-list tbody tr")).to_have_count(1)
    expect(page.locator("#limits")).to_contain_text("requests per minute")

    page.fill("#key-create input[name=name]", "made by the tenant")
    page.click("#key-create button[type=submit]")
    plaintext = page.locator("#shown-secret").input_value()
    gateway.client(plaintext).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    expect(page.locator("#key-list tbody tr")).to_have_count(2)
    watched.shot("portal")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#key-list tbody tr").filter(has_text="made by the tenant").get_by_role(
        "button", name="Revoke"
    ).click()
    expect(page.locator("#key-list tbody tr").filter(has_text="made by the tenant")).to_contain_text("revoked")
    with pytest.raises(openai.AuthenticationError):
        gateway.client(plaintext).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    audit = gateway.admin("GET", "/admin/audit", params={"limit": 5}).json()["data"]
    assert any(e["action"] == "key.revoke" and e["actor_role"] == "tenant" for e in audit)

    # Through its JSON, with its own cookie: the other tenant's key is "not found", its usage invisible.
    fetch = "(path) => fetch(path).then(async r => [r.status, await r.text()])"
    status, body = page.evaluate(fetch, f"/console/api/portal/keys/{other['id']}/limits")
    assert status == 404 and other["tenant_id"] not in body
    status, body = page.evaluate(
        fetch,
        f"/v1/organization/usage/completions?start_time=0&bucket_width=1d&limit=31&project_ids={other['tenant_id']}",
    )
    assert status == 200 and '"num_model_requests"' not in body
    for path in ("/admin/tenants", "/console/api/series", "/console/api/overview", "/metrics", "/admin/usage/invoices"):
        assert page.evaluate(fetch, path)[0] == 403, path
    watched.problems.clear()

    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    assert httpx.get(gateway.url + "/console/api/portal/keys").status_code == 401
    watched.close()


def test_every_operator_action_works_from_the_keyboard_and_every_field_has_a_label(
    console_gateway: Gateway, browser: Browser
) -> None:
    gateway = console_gateway
    watched = Watched(browser, gateway.url)
    page = watched.page
    page.goto(gateway.url + "/console")
    expect(page.locator("#token")).to_be_focused()  # the token field has the focus; Enter submits
    page.keyboard.type(ADMIN_TOKEN)
    page.keyboard.press("Enter")
    expect(page.locator("nav a").first).to_be_visible()
    watched.problems.clear()  # the browser logs the signed-out page's 401 for /console/api/session

    suffix = uuid.uuid4().hex[:6]
    page.click("nav a[href='#/plans']")
    page.fill("#plan-create input[name=name]", f"gold {suffix}")
    page.fill("#plan-create input[name=rpm]", "600")
    page.fill("#plan-create input[name=monthly_budget_usd]", "12.5")
    page.click("#plan-create button[type=submit]")
    plan = page.locator("#plan-list tbody tr").filter(has_text=f"gold {suffix}")
    expect(plan).to_contain_text("$12.50")
    page.fill("#plan-create input[name=name]", "bad")
    page.fill("#plan-create input[name=rpm]", "-1")
    page.click("#plan-create button[type=submit]")
    expect(page.locator("#plan-create-error")).to_contain_text("rpm")  # the admin API's message, as it answered
    watched.problems.clear()  # and the browser logs that 422

    page.click("nav a[href='#/prices']")
    page.fill("#price-create input[name=model]", f"model-{suffix}")
    page.fill("#price-create input[name=input_per_1m]", "0.15")
    page.fill("#price-create input[name=output_per_1m]", "0.6")
    page.click("#price-create button[type=submit]")
    price = page.locator("#price-list tbody tr").filter(has_text=f"model-{suffix}")
    expect(price).to_contain_text("$0.15")
    page.once("dialog", lambda dialog: dialog.accept())
    price.get_by_role("button", name="Delete").click()
    expect(page.locator("#price-list tbody tr").filter(has_text=f"model-{suffix}")).to_have_count(0)

    page.click("nav a[href='#/tokens']")
    page.fill("#token-create input[name=name]", f"reader {suffix}")
    page.click("#token-create button[type=submit]")
    reader = page.locator("#shown-secret").input_value()
    assert httpx.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {reader}"}).status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#token-list tbody tr").filter(has_text=f"reader {suffix}").get_by_role(
        "button", name="Revoke"
    ).click()
    expect(page.locator("#token-list tbody tr").filter(has_text=f"reader {suffix}")).to_contain_text("revoked")
    assert httpx.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {reader}"}).status_code == 401

    tenant = gateway.create_tenant(f"Keyboard {suffix}")
    key = gateway.create_key(tenant["id"])
    page.click("nav a[href='#/tenants']")
    row = page.locator("#tenant-list tbody tr").filter(has_text=tenant["name"])
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Suspend").click()
    expect(page.locator("#tenant-list tbody tr").filter(has_text=tenant["name"])).to_contain_text("suspended")
    with pytest.raises(openai.PermissionDeniedError):
        gateway.client(key["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    page.locator("#tenant-list tbody tr").filter(has_text=tenant["name"]).get_by_role("button", name="Resume").click()
    expect(page.locator("#tenant-list tbody tr").filter(has_text=tenant["name"])).to_contain_text("active")
    page.locator("#tenant-list tbody tr").filter(has_text=tenant["name"]).get_by_role("button", name="Manage").click()
    page.fill("#tenant-limits input[name=rpm]", "77")
    page.click("#tenant-limits button[type=submit]")
    expect(page.locator("#toast")).to_have_text("Limits saved.")
    assert gateway.admin("GET", f"/admin/tenants/{tenant['id']}").json()["rpm"] == 77
    key_row = page.locator("#key-list tbody tr").filter(has_text="default")
    key_row.get_by_role("button", name="Limits").click()
    expect(
        page.locator("#limits tbody tr").filter(has_text="tenant").filter(has_text="requests per minute")
    ).to_contain_text("77")
    key_row.get_by_role("button", name="Rotate").click()
    expect(page.locator("#key-rotate input[name=grace]")).to_be_focused()  # the grace period asked first
    page.keyboard.press("Enter")  # an hour, unless changed
    expect(page.locator(".once strong")).to_contain_text("the old one works until")
    rotated = page.locator("#shown-secret").input_value()
    for plaintext in (key["key"], rotated):  # the old key works through the grace period, the new one at once
        gateway.client(plaintext).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    # Every form field on the page is labelled for assistive technology.
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select')].filter(el =>
            !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).map(el => el.name || el.id)"""
    )
    assert unlabelled == []
    assert watched.problems == []
    watched.close()


def test_lists_page_past_the_first_page_and_tenants_are_found_by_name(
    console_gateway: Gateway, browser: Browser
) -> None:
    gateway = console_gateway
    tag = f"Paged {uuid.uuid4().hex[:6]}"
    for number in range(51):  # one more than a page of the console's lists
        gateway.create_tenant(f"{tag} {number:02d}")
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(ADMIN_TOKEN)
    watched.problems.clear()  # the browser logs the signed-out page's 401 for /console/api/session
    page.click("nav a[href='#/tenants']")
    page.fill("#tenant-search input[name=name]", tag.lower())  # any case, any part of the name
    page.click("#tenant-search button[type=submit]")
    expect(page.locator("#tenant-list caption")).to_contain_text(tag.lower())
    rows = page.locator("#tenant-list tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text(f"{tag} 50")  # newest first
    page.click("#tenant-list-more")
    expect(rows).to_have_count(51)
    expect(rows.last).to_contain_text(f"{tag} 00")
    expect(page.locator("#tenant-list-more")).to_be_hidden()
    expect(page.locator("#tenant-list-count")).to_have_text("51 shown, all of them.")
    page.fill("#tenant-search input[name=name]", f"{tag} 07")
    page.click("#tenant-search button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(f"{tag} 07")

    # The audit log pages the same way, narrowed by the admin API's own filters.
    page.click("nav a[href='#/audit']")
    entries = page.locator("#audit-list tbody tr")
    expect(entries).to_have_count(50)  # the unfiltered log: these tenants' creations are its newest 50 too
    unfiltered = entries.first.element_handle()
    page.fill("#audit-filter input[name=action]", "tenant.create")
    page.click("#audit-filter button[type=submit]")
    # The filtered page replaces the table; until then "Load more" would page the unfiltered one (and be lost).
    page.wait_for_function("row => !row.isConnected", arg=unfiltered)
    expect(entries).to_have_count(50)
    expect(entries.first).to_contain_text(f"{tag} 50")
    expect(entries).to_have_count(50)
    page.click("#audit-list-more")
    expect(entries.filter(has_text=f"{tag} 00")).to_have_count(1)
    assert set(entries.locator("td:nth-child(3)").all_inner_texts()) == {"tenant.create"}
    tenant_id = gateway.admin("GET", "/admin/tenants", params={"name": f"{tag} 07"}).json()["data"][0]["id"]
    page.fill("#audit-filter input[name=action]", "")
    page.fill("#audit-filter input[name=tenant_search]", f"{tag} 07")  # picked by name, sent as its id
    expect(page.locator("#audit-filter select[name=tenant_id] option")).to_have_count(2)
    page.select_option("#audit-filter select[name=tenant_id]", label=f"{tag} 07")
    with page.expect_request(lambda request: f"tenant_id={tenant_id}" in request.url):
        page.click("#audit-filter button[type=submit]")
    expect(entries).to_have_count(1)
    expect(entries.first).to_contain_text(f"{tag} 07")
    expect(page.locator("#audit-list-more")).to_be_hidden()
    assert watched.problems == []
    watched.close()


def test_saved_limits_stay_shown_and_budgets_keep_their_cents(console_gateway: Gateway, browser: Browser) -> None:
    gateway = console_gateway
    tenant = gateway.create_tenant(f"Budgeted {uuid.uuid4().hex[:6]}")
    gateway.create_key(tenant["id"])
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(ADMIN_TOKEN)
    watched.problems.clear()  # the browser logs the signed-out page's 401 for /console/api/session
    page.click("nav a[href='#/tenants']")
    page.fill("#tenant-search input[name=name]", tenant["name"])
    page.click("#tenant-search button[type=submit]")
    row = page.locator("#tenant-list tbody tr").filter(has_text=tenant["name"])
    row.get_by_role("button", name="Manage").click()
    page.fill("#tenant-limits input[name=rpm]", "77")
    page.fill("#tenant-limits input[name=tpm]", "5000")
    page.fill("#tenant-limits input[name=monthly_budget_usd]", "12.34")
    page.click("#tenant-limits button[type=submit]")
    expect(page.locator("#toast")).to_have_text("Limits saved.")
    expect(row.locator("td").nth(3)).to_have_text("77")  # the list's row says what was saved

    # Another change re-reads the tenant: the form shows what is saved, not what the list held before.
    page.fill("#key-create input[name=name]", "second")
    page.click("#key-create button[type=submit]")
    expect(page.locator("#shown-secret")).to_be_visible()
    expect(page.locator("#tenant-limits input[name=rpm]")).to_have_value("77")
    expect(page.locator("#tenant-limits input[name=tpm]")).to_have_value("5000")
    assert float(page.locator("#tenant-limits input[name=monthly_budget_usd]").input_value()) == 12.34

    # A budget in dollars and cents, not rounded to whole dollars.
    page.locator("#key-list tbody tr").filter(has_text="second").get_by_role("button", name="Limits").click()
    budget = page.locator("#limits tbody tr").filter(has_text="monthly budget")
    expect(budget.locator("td").nth(2)).to_have_text("$12.34")
    expect(budget.locator("td").nth(4)).to_have_text("$12.34")
    assert watched.problems == []
    watched.close()


def test_signing_in_over_plain_http_on_a_lan_address_says_why_it_cannot_work(
    console_gateway: Gateway, browser: Browser
) -> None:
    # The browser reaches the gateway by a name that is not localhost over http://, as from another machine on a
    # LAN: it refuses the Secure session cookie, so the sign-in "succeeds" and the session is still missing.
    port = httpx.URL(console_gateway.url).port
    rules = "--host-resolver-rules=MAP gateway.lan.test 127.0.0.1"
    lan = browser.browser_type.launch(executable_path=chromium(), args=[*CHROMIUM_ARGS, rules])
    try:
        watched = Watched(lan, f"http://gateway.lan.test:{port}")
        page = watched.page
        page.goto(watched.url + "/console")
        expect(page.locator("#insecure-origin")).to_contain_text("The console needs HTTPS")  # said before trying
        page.fill("#token", ADMIN_TOKEN)
        page.click("#sign-in-form button[type=submit]")
        problem = page.locator("#sign-in-form-error")
        expect(problem).to_contain_text("The console needs HTTPS, or http://localhost / 127.0.0.1")
        expect(problem).to_contain_text("refused the secure session cookie")
        expect(page.locator("#sign-out")).to_be_hidden()
        watched.close()
    finally:
        lan.close()


def test_api_docs_render_with_every_other_host_unreachable(console_gateway: Gateway, browser: Browser) -> None:
    watched = Watched(browser, console_gateway.url)
    elsewhere: list[str] = []

    def offline(route: Route) -> None:
        if route.request.url.startswith(console_gateway.url + "/"):
            route.continue_()
        else:  # as on a machine without the internet: a CDN cannot answer
            elsewhere.append(route.request.url)
            route.abort()

    watched.context.route("**/*", offline)
    page = watched.page
    page.goto(console_gateway.url + "/docs")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("tenantgate")
    assert page.locator(".swagger-ui .opblock").count() > 20
    assert elsewhere == [] and watched.problems == []
    watched.close()
