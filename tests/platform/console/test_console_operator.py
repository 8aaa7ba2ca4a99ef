"""The operator's forms in headless Chromium: everything the admin API lets an operator change can be changed from
the console (key, tenant and plan limits; price overrides by plan or tenant), the server's refusals are shown on the
form, and ids are shown as names. Each test works on tenants and plans it creates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import openai
import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import ADMIN_TOKEN
from tests.platform.console.browsing import MESSAGES, Watched
from tests.support.gateway import Gateway

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop


def _manage(watched: Watched, tenant_name: str) -> None:
    page = watched.page
    page.click("nav a[href='#/tenants']")
    page.fill("#tenant-search input[name=name]", tenant_name)
    page.click("#tenant-search button[type=submit]")
    page.locator("#tenant-list tbody tr").filter(has_text=tenant_name).get_by_role("button", name="Manage").click()
    expect(page.locator("#tenant-heading")).to_have_text(f"Tenant {tenant_name}")


def test_a_keys_limits_are_set_at_creation_and_edited_later(console_gateway: Gateway, browser: Browser) -> None:
    gateway = console_gateway
    tenant = gateway.create_tenant(f"Key Limits {uuid.uuid4().hex[:6]}")
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(ADMIN_TOKEN)
    watched.problems.clear()  # the browser logs the signed-out page's 401 for /console/api/session
    _manage(watched, tenant["name"])

    create = page.locator("#key-create")
    create.locator("input[name=name]").fill("limited")
    create.locator("input[name=rpm]").fill("5")
    create.locator("input[name=tpm]").fill("1000")
    create.locator("input[name=rpd]").fill("100")
    create.locator("input[name=max_concurrency]").fill("2")
    create.locator("input[name=allowed_models]").fill("gpt-4o-mini")
    create.locator("input[name=expires_at]").fill("2030-01-02T03:04")
    create.locator("button[type=submit]").click()
    plaintext = page.locator("#shown-secret").input_value()
    [key] = gateway.admin("GET", f"/admin/tenants/{tenant['id']}/keys").json()["data"]
    assert (key["rpm"], key["tpm"], key["rpd"], key["max_concurrency"]) == (5, 1000, 100, 2)
    assert key["allowed_models"] == ["gpt-4o-mini"]
    assert key["expires_at"].startswith("2030-01-02T03:04:00")
    gateway.client(plaintext).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.APIStatusError):  # the key's own model list, set from the console
        gateway.client(plaintext, max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)

    page.get_by_role("button", name="Limits of key limited").click()
    edit = page.locator("#key-edit")
    expect(edit.locator("input[name=rpm]")).to_have_value("5")
    expect(edit.locator("input[name=allowed_models]")).to_have_value("gpt-4o-mini")
    expect(edit.locator("input[name=expires_at]")).to_have_value("2030-01-02T03:04")

    edit.locator("input[name=rpm]").fill("-1")
    edit.locator("button[type=submit]").click()
    expect(page.locator("#key-edit-error")).to_contain_text("rpm")  # the admin API's refusal, on the form
    watched.problems.clear()  # and the browser logs that 422
    assert gateway.admin("GET", f"/admin/keys/{key['id']}").json()["rpm"] == 5

    edit.locator("input[name=rpm]").fill("9")
    edit.locator("input[name=allowed_models]").fill("")
    edit.locator("input[name=expires_at]").fill("")
    edit.locator("button[type=submit]").click()
    expect(page.locator("#toast")).to_have_text("Key limited saved.")
    saved = gateway.admin("GET", f"/admin/keys/{key['id']}").json()
    assert (saved["rpm"], saved["allowed_models"], saved["expires_at"]) == (9, None, None)
    expect(page.locator("#key-edit input[name=rpm]")).to_have_value("9")  # the form shows what was saved
    expect(page.locator("#key-list tbody tr").filter(has_text="limited").locator("td").nth(3)).to_have_text("9")
    gateway.client(plaintext).chat.completions.create(model="gpt-4o", messages=MESSAGES)  # every model now
    watched.shot("key-limits")
    assert watched.problems == []
    watched.close()


def test_a_tenants_plan_name_and_limits_and_a_plan_are_edited(console_gateway: Gateway, browser: Browser) -> None:
    gateway = console_gateway
    suffix = uuid.uuid4().hex[:6]
    bronze = gateway.admin("POST", "/admin/plans", json={"name": f"bronze {suffix}", "rpm": 10}).json()
    silver = gateway.admin("POST", "/admin/plans", json={"name": f"silver {suffix}", "rpm": 60}).json()
    tenant = gateway.create_tenant(f"Editable {suffix}", plan_id=bronze["id"])
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(ADMIN_TOKEN)
    watched.problems.clear()
    _manage(watched, tenant["name"])

    settings = page.locator("#tenant-limits")
    expect(settings.locator("select[name=plan_id]")).to_have_value(bronze["id"])
    settings.locator("input[name=fair_share_weight]").fill("0")
    settings.locator("button[type=submit]").click()
    expect(page.locator("#tenant-limits-error")).to_contain_text("fair_share_weight")
    watched.problems.clear()

    renamed = f"Renamed {suffix}"
    settings.locator("input[name=fair_share_weight]").fill("")
    settings.locator("input[name=name]").fill(renamed)
    settings.locator("select[name=plan_id]").select_option(label=f"silver {suffix}")
    settings.locator("input[name=rpd]").fill("1000")
    settings.locator("input[name=max_concurrency]").fill("3")
    settings.locator("input[name=monthly_token_quota]").fill("50000")
    settings.locator("input[name=allowed_models]").fill("gpt-4o-mini, gpt-4o")
    settings.locator("button[type=submit]").click()
    expect(page.locator("#toast")).to_have_text("Limits saved.")
    expect(page.locator("#tenant-heading")).to_have_text(f"Tenant {renamed}")
    saved = gateway.admin("GET", f"/admin/tenants/{tenant['id']}").json()
    assert (saved["name"], saved["plan_id"], saved["rpd"], saved["max_concurrency"]) == (
        renamed,
        silver["id"],
        1000,
        3,
    )
    assert (saved["monthly_token_quota"], saved["allowed_models"]) == (50000, ["gpt-4o", "gpt-4o-mini"])
    row = page.locator("#tenant-list tbody tr").filter(has_text=renamed)
    expect(row).to_contain_text(f"silver {suffix}")

    page.click("nav a[href='#/plans']")
    page.get_by_role("button", name=f"Edit plan silver {suffix}").click()
    edit = page.locator("#plan-edit")
    expect(edit.locator("input[name=rpm]")).to_have_value("60")
    edit.locator("input[name=rpm]").fill("1.5")
    edit.locator("button[type=submit]").click()
    expect(page.locator("#plan-edit-error")).to_contain_text("rpm")
    watched.problems.clear()
    edit.locator("input[name=rpm]").fill("120")
    edit.locator("input[name=rpd]").fill("5000")
    edit.locator("button[type=submit]").click()
    expect(page.locator("#toast")).to_have_text(f"Plan silver {suffix} saved.")
    expect(page.locator("#plan-list tbody tr").filter(has_text=f"silver {suffix}")).to_contain_text("5,000")
    plan = gateway.admin("GET", f"/admin/plans/{silver['id']}").json()
    assert (plan["rpm"], plan["rpd"]) == (120, 5000)
    assert watched.problems == []
    watched.close()


def test_price_overrides_for_a_plan_or_a_tenant_picked_by_name(console_gateway: Gateway, browser: Browser) -> None:
    gateway = console_gateway
    suffix = uuid.uuid4().hex[:6]
    plan = gateway.admin("POST", "/admin/plans", json={"name": f"priced plan {suffix}"}).json()
    tenant = gateway.create_tenant(f"Priced Tenant {suffix}")
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(ADMIN_TOKEN)
    watched.problems.clear()
    page.click("nav a[href='#/prices']")

    form = page.locator("#price-create")
    form.locator("input[name=model]").fill(f"tenant-model-{suffix}")
    form.locator("input[name=input_per_1m]").fill("1")
    form.locator("input[name=cached_input_per_1m]").fill("0.5")
    form.locator("input[name=output_per_1m]").fill("2")
    form.locator("input[name=tenant_search]").fill(f"priced tenant {suffix}")
    choice = form.locator("select[name=tenant_id]")
    expect(choice.locator("option")).to_have_count(2)  # "every tenant" and the one whose name matches
    choice.select_option(label=tenant["name"])
    form.locator("button[type=submit]").click()
    row = page.locator("#price-list tbody tr").filter(has_text=f"tenant-model-{suffix}")
    expect(row).to_contain_text(f"tenant {tenant['name']}")
    expect(row).to_contain_text("$0.5")
    expect(row.locator(f"[title='{tenant['id']}']")).to_have_count(1)  # the id, on hover
    [price] = gateway.admin("GET", "/admin/prices", params={"model": f"tenant-model-{suffix}"}).json()["data"]
    assert (price["tenant_id"], price["cached_input_per_1m"]) == (tenant["id"], "0.5")

    form = page.locator("#price-create")
    form.locator("input[name=model]").fill(f"plan-model-{suffix}")
    form.locator("input[name=input_per_1m]").fill("3")
    form.locator("input[name=output_per_1m]").fill("4")
    form.locator("select[name=plan_id]").select_option(label=plan["name"])
    later = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    form.locator("input[name=effective_from]").fill(later.strftime("%Y-%m-%dT%H:%M"))
    form.locator("input[name=tenant_search]").fill(f"priced tenant {suffix}")
    expect(form.locator("select[name=tenant_id] option")).to_have_count(2)
    form.locator("select[name=tenant_id]").select_option(label=tenant["name"])
    form.locator("button[type=submit]").click()  # a tenant and a plan: the admin API says it takes one
    expect(page.locator("#price-create-error")).to_contain_text("not both")
    watched.problems.clear()
    form.locator("select[name=tenant_id]").select_option(label="every tenant")
    form.locator("button[type=submit]").click()
    row = page.locator("#price-list tbody tr").filter(has_text=f"plan-model-{suffix}")
    expect(row).to_contain_text(f"plan {plan['name']}")
    expect(row).to_contain_text("as input")
    [price] = gateway.admin("GET", "/admin/prices", params={"model": f"plan-model-{suffix}"}).json()["data"]
    assert price["plan_id"] == plan["id"]
    assert datetime.fromisoformat(price["effective_from"]) == later
    watched.shot("prices")
    assert watched.problems == []
    watched.close()


def test_the_audit_log_names_tenants_keys_and_tokens_with_ids_on_hover(
    console_gateway: Gateway, browser: Browser
) -> None:
    gateway = console_gateway
    suffix = uuid.uuid4().hex[:6]
    token = gateway.admin("POST", "/admin/tokens", json={"name": f"deployer {suffix}", "role": "admin"}).json()
    as_token = {"Authorization": f"Bearer {token['token']}"}
    tenant = gateway.admin("POST", "/admin/tenants", json={"name": f"Audited {suffix}"}, headers=as_token).json()
    # More keys changed than the console asks names for at once: every name still arrives.
    for number in range(6):
        other = f"/admin/tenants/{tenant['id']}/keys"
        made = gateway.admin("POST", other, json={"name": f"batch {number}"}, headers=as_token).json()
        gateway.admin("PATCH", f"/admin/keys/{made['id']}", json={"rpm": number}, headers=as_token)
    key = gateway.admin("POST", f"/admin/tenants/{tenant['id']}/keys", json={"name": "ci"}, headers=as_token).json()
    gateway.admin("PATCH", f"/admin/keys/{key['id']}", json={"rpm": 7}, headers=as_token)
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(ADMIN_TOKEN)
    watched.problems.clear()
    page.click("nav a[href='#/audit']")
    page.fill("#audit-filter input[name=tenant_search]", tenant["name"])
    expect(page.locator("#audit-filter select[name=tenant_id] option")).to_have_count(2)
    page.select_option("#audit-filter select[name=tenant_id]", label=tenant["name"])
    page.click("#audit-filter button[type=submit]")
    entries = page.locator("#audit-list tbody tr")
    expect(entries).to_have_count(15)
    expect(entries.filter(has_text="key.update").filter(has_text="key batch ")).to_have_count(6)
    update = entries.filter(has_text="key.update").filter(has_text="key ci")
    expect(update.locator("td").nth(1)).to_have_text(f"deployer {suffix} (admin)")
    expect(update.locator("td").nth(3)).to_have_text("key ci")
    expect(update.locator("td").nth(4)).to_have_text(tenant["name"])
    assert update.locator("td").nth(1).locator(".named").get_attribute("title") == token["id"]
    assert update.locator("td").nth(3).locator(".named").get_attribute("title") == key["id"]
    assert update.locator("td").nth(4).locator(".named").get_attribute("title") == tenant["id"]
    created = entries.filter(has_text="tenant.create")
    expect(created.locator("td").nth(3)).to_have_text(f"tenant {tenant['name']}")
    for column in (2, 4, 5):  # actor, target, tenant: no bare id where the console knows the name
        expect(entries.locator(f"td:nth-child({column})").filter(has_text="_")).to_have_count(0)
        shown = " ".join(entries.locator(f"td:nth-child({column})").all_inner_texts())
        assert not any(prefix in shown for prefix in ("adm_", "ten_", "key_")), shown
    watched.shot("audit")
    assert watched.problems == []
    watched.close()


def test_a_rotated_key_shows_its_grace_period_and_key_buttons_name_their_key(
    console_gateway: Gateway, browser: Browser
) -> None:
    gateway = console_gateway
    tenant = gateway.create_tenant(f"Rotating {uuid.uuid4().hex[:6]}")
    old = gateway.create_key(tenant["id"], name="svc")
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(ADMIN_TOKEN)
    watched.problems.clear()
    _manage(watched, tenant["name"])
    old_label = f"key svc ({old['prefix']}…)"
    page.get_by_role("button", name=f"Rotate {old_label}", exact=True).click()
    page.click("#key-rotate button[type=submit]")  # an hour's grace, unless changed
    new = page.locator("#shown-secret").input_value()
    rows = page.locator("#key-list tbody tr").filter(has_text="svc")
    expect(rows).to_have_count(2)
    old_row = rows.filter(has_text=old["prefix"])
    expect(old_row.locator("td").nth(2)).to_contain_text("rotated, works until")
    expires = gateway.admin("GET", f"/admin/keys/{old['id']}").json()["expires_at"]
    shown = datetime.fromisoformat(expires).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    expect(old_row.locator("td").nth(2)).to_contain_text(shown)
    new_row = rows.filter(has_not_text=old["prefix"])
    expect(new_row.locator("td").nth(2)).to_have_text("active")

    # Two keys of one name: each button says which key it acts on, by name and prefix.
    new_prefix = new[: len(old["prefix"])]
    for action in ("Revoke", "Rotate", "Limits of"):
        for prefix in (old["prefix"], new_prefix):
            expect(page.get_by_role("button", name=f"{action} key svc ({prefix}…)", exact=True)).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Revoke {old_label}", exact=True).click()
    expect(old_row.locator("td").nth(2)).to_have_text("revoked")
    expect(new_row.locator("td").nth(2)).to_have_text("active")
    assert watched.problems == []
    watched.close()
