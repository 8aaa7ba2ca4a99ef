"""Single sign-on to the console through a real OpenID Connect provider on loopback (``oidc-provider-mock``: an
authlib-based provider that signs ID tokens with its own key), in headless Chromium."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from oidc_provider_mock import User, run_server_in_thread
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tenantgate import database
from tenantgate.platform.app import create_app
from tenantgate.platform.console.oidc import FLOW_COOKIE
from tenantgate.platform.serving import uvicorn_options
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.platform.console.browsing import CHROMIUM_ARGS, chromium
from tests.support.gateway import Gateway
from tests.support.server import ServedApp

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop

USERS = (
    User(sub="ada", claims={"email": "ada@example.com", "email_verified": True, "groups": ["staff", "sre"]}),
    User(sub="fin", claims={"email": "fin@example.com", "email_verified": True, "groups": ["finance"]}),
    User(sub="eve", claims={"email": "eve@example.com", "email_verified": True, "groups": ["visitors"]}),
    # Addresses nobody verified: one claims ada's, one has no username either.
    User(
        sub="mal",
        claims={
            "email": "ada@example.com",
            "email_verified": False,
            "preferred_username": "mallory",
            "groups": ["sre"],
        },
    ),
    User(sub="nov", claims={"email": "ada@example.com", "groups": ["sre"]}),
    # Another user who picked mallory's username, and two whose names only differ after 64 characters.
    User(sub="mal2", claims={"preferred_username": "mallory", "groups": ["sre"]}),
    User(sub="long1", claims={"preferred_username": "x" * 70 + "1", "groups": ["sre"]}),
    User(sub="long2", claims={"preferred_username": "x" * 70 + "2", "groups": ["sre"]}),
)


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    with run_server_in_thread(user_claims=USERS, require_nonce=True) as provider:
        issuer = f"http://localhost:{provider.server_port}"
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sso') / 'sso.db'}"
        database.upgrade(url)
        settings = make_settings(
            database_url=url,
            console_oidc_issuer=issuer,
            console_oidc_client_id="tenantgate-console",
            console_oidc_client_secret="console-client-secret",
            console_oidc_roles={"sre": "admin", "finance": "billing"},
            admin_ip_rate_limit="10000/minute",
        )
        app = create_app(settings)
        with ServedApp(app, **uvicorn_options(settings)) as served:
            yield Gateway(served.url, "", settings, app.runtime, served.loop), issuer


@pytest.fixture(scope="module")
def browser(sso: tuple[Gateway, str]) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _stable(issuer: str, sub: str) -> str:
    return hashlib.sha256(f"{issuer}|{sub}".encode()).hexdigest()[:16]


def _sign_in(browser: Browser, gateway: Gateway, sub: str) -> Page:
    page = browser.new_context().new_page()
    page.goto(gateway.url + "/console")
    page.click("#sso")
    page.fill("input[name=sub]", sub)  # the provider's own sign-in page
    page.click("button[type=submit]:has-text('Authorize')")
    return page


def test_single_sign_on_maps_groups_to_roles(sso: tuple[Gateway, str], browser: Browser) -> None:
    gateway, issuer = sso
    page = _sign_in(browser, gateway, "ada")
    expect(page.locator("#who")).to_have_text("ada@example.com (admin)")
    assert "Tenants" in page.locator("nav").inner_text()
    assert not [c for c in page.context.cookies() if c["name"] == FLOW_COOKIE]  # the flow's cookie is gone
    page.click("nav a[href='#/tenants']")
    page.fill("#tenant-create input[name=name]", "made through sso")
    page.click("#tenant-create button[type=submit]")
    expect(page.locator("#tenant-heading")).to_have_text("Tenant made through sso")
    page.click("nav a[href='#/audit']")
    expect(page.locator("#audit-list")).to_contain_text(f"oidc:{_stable(issuer, 'ada')}:ada@example.com (admin)")
    page.context.close()

    finance = _sign_in(browser, gateway, "fin")
    expect(finance.locator("#who")).to_have_text("fin@example.com (billing)")
    assert "Tenants" not in finance.locator("nav").inner_text()
    finance.context.close()


def test_an_unverified_email_never_names_the_user(sso: tuple[Gateway, str], browser: Browser) -> None:
    gateway, issuer = sso
    page = _sign_in(browser, gateway, "mal")
    expect(page.locator("#who")).to_have_text("mallory (admin)")  # not ada@example.com, whose address it claims
    page.click("nav a[href='#/tenants']")
    page.fill("#tenant-create input[name=name]", "made by mallory")
    page.click("#tenant-create button[type=submit]")
    expect(page.locator("#tenant-heading")).to_have_text("Tenant made by mallory")
    page.click("nav a[href='#/audit']")
    entry = page.locator("#audit-list tbody tr").filter(has_text="made by mallory")
    expect(entry).to_contain_text(f"oidc:{_stable(issuer, 'mal')}:mallory (admin)")
    page.context.close()

    unverified = _sign_in(browser, gateway, "nov")  # no email_verified claim at all: not verified
    expect(unverified.locator("#who")).to_have_text("nov (admin)")
    unverified.context.close()


def test_a_user_in_no_mapped_group_is_refused(sso: tuple[Gateway, str], browser: Browser) -> None:
    gateway, _ = sso
    page = _sign_in(browser, gateway, "eve")
    expect(page.locator("#sign-in-problem")).to_have_text("Your account is in no group that may use this console.")
    assert not [c for c in page.context.cookies() if c["name"].startswith("__Host-tenantgate-console")]
    page.context.close()


def test_a_callback_without_its_flow_or_with_a_forged_state_is_refused(sso: tuple[Gateway, str]) -> None:
    gateway, _ = sso
    http = httpx.Client(base_url=gateway.url, follow_redirects=False)
    started = http.get("/console/oidc/login")
    assert started.status_code == 303
    query = parse_qs(urlsplit(started.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    flow = started.cookies[FLOW_COOKIE]
    for cookie, state in ((None, query["state"][0]), (flow, "forged"), (flow + "0", "x")):
        http.cookies.clear()
        if cookie is not None:
            http.cookies.set(FLOW_COOKIE, cookie)
        refused = http.get("/console/oidc/callback", params={"code": "x", "state": state})
        assert refused.status_code == 303 and "sign_in_error=" in refused.headers["location"]
        assert "__Host-tenantgate-console" not in refused.headers.get("set-cookie", "")


def _actors(gateway: Gateway, name: str) -> list[str]:
    entries = httpx.get(
        gateway.url + "/admin/audit",
        params={"action": "tenant.create", "limit": 100},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()["data"]
    return [e["actor_id"] for e in entries if e["after"] and e["after"].get("name") == name]


def _create_tenant(page: Page, name: str) -> None:
    page.click("nav a[href='#/tenants']")
    page.fill("#tenant-create input[name=name]", name)
    page.click("#tenant-create button[type=submit]")
    expect(page.locator("#tenant-heading")).to_have_text(f"Tenant {name}")


def test_users_who_pick_the_same_name_stay_two_actors(sso: tuple[Gateway, str], browser: Browser) -> None:
    gateway, issuer = sso
    seen: dict[str, str] = {}
    for sub in ("mal", "mal2", "long1", "long2"):
        page = _sign_in(browser, gateway, sub)
        expect(page.locator("#sign-out")).to_be_visible()
        _create_tenant(page, f"made by {sub}")
        page.context.close()
        [actor] = _actors(gateway, f"made by {sub}")
        assert actor.startswith(f"oidc:{_stable(issuer, sub)}:") and len(actor) <= 64
        seen[sub] = actor
    assert len(set(seen.values())) == 4, seen
    assert seen["mal"].endswith(":mallory") and seen["mal2"].endswith(":mallory")


def _token_requests(caplog: pytest.LogCaptureFixture) -> int:
    return sum("POST /oauth2/token" in record.getMessage() for record in caplog.records)


def test_a_replayed_callback_never_reaches_the_provider_again(
    sso: tuple[Gateway, str], caplog: pytest.LogCaptureFixture
) -> None:
    gateway, _ = sso
    caplog.set_level(logging.INFO, logger="werkzeug")
    http = httpx.Client(base_url=gateway.url, follow_redirects=False)
    started = http.get("/console/oidc/login")
    authorize = httpx.post(started.headers["location"], data={"sub": "ada"}, follow_redirects=False)
    callback = authorize.headers["location"]
    assert callback.startswith(gateway.url + "/console/oidc/callback?")
    flow = started.cookies[FLOW_COOKIE]
    before = _token_requests(caplog)
    signed_in = http.get(callback, cookies={FLOW_COOKIE: flow})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/console"
    assert "__Host-tenantgate-console=" in signed_in.headers["set-cookie"]
    assert _token_requests(caplog) == before + 1
    for _ in range(3):  # the same callback, its flow cookie kept by whoever saw it
        replayed = http.get(callback, cookies={FLOW_COOKIE: flow})
        assert replayed.status_code == 303 and replayed.headers["location"] == "/console?sign_in_error=flow_invalid"
        assert "__Host-tenantgate-console=" not in replayed.headers.get("set-cookie", "")
    # A bogus code spends its flow too: one token request, then none.
    started = http.get("/console/oidc/login")
    state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
    bogus = {"code": "bogus", "state": state}
    flow = started.cookies[FLOW_COOKIE]
    assert http.get("/console/oidc/callback", params=bogus, cookies={FLOW_COOKIE: flow}).headers["location"] == (
        "/console?sign_in_error=sign_in_failed"
    )
    for _ in range(5):
        http.get("/console/oidc/callback", params=bogus, cookies={FLOW_COOKIE: flow})
    time.sleep(0.2)  # the provider's log line is written after its answer
    assert _token_requests(caplog) == before + 2


def test_the_sign_in_page_shows_only_its_own_words(sso: tuple[Gateway, str], browser: Browser) -> None:
    gateway, _ = sso
    page = browser.new_context().new_page()
    lure = "Visit https://evil.example to restore your account"
    page.goto(gateway.url + "/console/oidc/callback?" + urlencode({"error": lure, "error_description": lure}))
    expect(page.locator("#sign-in-problem")).to_have_text("The identity provider refused the sign-in.")
    page.goto(gateway.url + "/console?" + urlencode({"sign_in_error": lure}))
    expect(page.locator("#sign-in-problem")).to_have_text(
        "Single sign-on did not complete. Try again, or sign in with a token."
    )
    page.goto(gateway.url + "/console?sign_in_error=constructor")  # not a key of any object's prototype either
    expect(page.locator("#sign-in-problem")).to_have_text(
        "Single sign-on did not complete. Try again, or sign in with a token."
    )
    assert "evil.example" not in page.content()
    page.context.close()
