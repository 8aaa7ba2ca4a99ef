"""What an attacker's audit of the console and the admin API found, each as the behaviour that now holds: a
suspended tenant's console credentials read nothing, every console response carries its security headers (walked
over every console route of the app and its error paths), secrets are never cacheable, and the audit log names
what changed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tenantgate.platform.admin.auth import AdminIdentity
from tenantgate.platform.app import create_app
from tenantgate.platform.console import portal
from tenantgate.platform.console import routes as console_routes
from tenantgate.platform.console.cookies import CSRF_HEADER
from tenantgate.platform.console.headers import SECURITY_HEADERS
from tenantgate.tenants.models import AdminRole
from tests.conftest import make_settings
from tests.platform.console.browsing import Watched
from tests.platform.console.conftest import Console
from tests.platform.console.conftest import openai_error as _error
from tests.support.dns import TableResolver
from tests.support.gateway import Gateway
from tests.support.server import ServedApp


def _tenant_token(gateway: Gateway, tenant_id: str) -> dict[str, Any]:
    response = gateway.admin("POST", "/admin/tokens", json={"name": "portal", "role": "tenant", "tenant_id": tenant_id})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_suspended_tenants_console_credentials_read_nothing(console_gateway: Gateway) -> None:
    gateway = console_gateway
    key = gateway.new_key("suspended-reader")
    tenant_id = key["tenant_id"]
    token = _tenant_token(gateway, tenant_id)["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    console = Console(gateway, token)
    costs = f"/v1/organization/costs?start_time={int(time.time()) - 86400}"
    usage = f"/v1/organization/usage/completions?start_time={int(time.time()) - 86400}"
    assert httpx.get(gateway.url + costs, headers=bearer).status_code == 200
    assert console.get(costs).status_code == 200

    assert gateway.admin("POST", f"/admin/tenants/{tenant_id}/suspend").status_code == 200
    # The same 403 as the tenant's API keys get, for every way in a tenant credential has.
    _error(httpx.get(gateway.url + costs, headers={"Authorization": f"Bearer {key['key']}"}), 403, "tenant_suspended")
    for path in (costs, usage, "/console/api/portal/tenant", "/console/api/portal/keys", "/console/api/session"):
        _error(httpx.get(gateway.url + path, headers=bearer), 403, "tenant_suspended")
        _error(console.get(path), 403, "tenant_suspended")
    _error(console.write("POST", "/console/api/portal/keys", json={"name": "while-suspended"}), 403, "tenant_suspended")
    _error(httpx.post(gateway.url + "/console/api/session", json={"token": token}), 403, "tenant_suspended")
    # A credential that is not a tenant's is still checked as before: a wrong CSRF token is refused as such.
    _error(console.http.post("/console/api/portal/keys", json={}), 403, "csrf_failed")

    # It can still end its session (only the cookie and its CSRF token are needed), and that session is gone.
    assert console.write("DELETE", "/console/api/session").status_code == 204
    assert gateway.admin("POST", f"/admin/tenants/{tenant_id}/resume").status_code == 200
    _error(console.get(costs), 401)
    console = Console(gateway, token)  # signs in again
    assert console.get(costs).status_code == 200
    assert httpx.get(gateway.url + costs, headers=bearer).status_code == 200
    assert httpx.post(gateway.url + "/console/api/session", json={"token": token}).status_code == 200


def _console_routes() -> Iterator[tuple[str, str]]:
    """Every (method, path) the app serves under /console (and /dashboard), read from its routers."""
    app = create_app(make_settings())
    for route in app.api.routes:
        inner = getattr(route, "original_router", None)
        routes = inner.routes if inner is not None else [route]
        prefix = route.include_context.prefix if inner is not None else ""  # type: ignore[attr-defined]
        for sub in routes:
            path = prefix + getattr(sub, "path", "")
            if path.startswith(("/console", "/dashboard")):
                for method in sorted(getattr(sub, "methods", None) or ()):
                    if method != "HEAD":
                        yield method, path


def _assert_secured(response: httpx.Response, what: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (what, response.status_code, name)
    assert response.headers.get("cache-control") in ("no-store", "no-cache"), (what, response.status_code)
    if "sk-" in response.text or '"key":' in response.text or '"token":' in response.text:
        assert response.headers["cache-control"] == "no-store", what


def test_every_console_response_carries_its_security_headers(console_gateway: Gateway) -> None:
    gateway = console_gateway
    key = gateway.new_key("headers")
    tenant = Console(gateway, _tenant_token(gateway, key["tenant_id"])["token"])
    admin = Console(gateway, gateway.admin_token)
    routes = sorted(set(_console_routes()))
    assert len(routes) >= 15, routes  # the walk found the console, not an empty router list
    assert ("POST", "/console/api/portal/keys/{key_id}/rotate") in routes
    anonymous = httpx.Client(base_url=gateway.url, timeout=30, follow_redirects=False)
    for method, template in routes:
        path = re.sub(r"\{key_id\}", key["id"], template)
        path = re.sub(r"\{[^}]+\}", "unknown", path)
        for who, client, headers in (
            ("anonymous", anonymous, {}),
            ("tenant", tenant.http, {CSRF_HEADER: tenant.csrf}),
            ("admin", admin.http, {CSRF_HEADER: admin.csrf}),
            ("no csrf", tenant.http, {}),
        ):
            if method == "DELETE" and path == "/console/api/session" and who != "anonymous":
                continue  # signing out would end the sessions the rest of the walk uses
            for body in ({}, {"unexpected": 1}):
                response = client.request(method, path, headers=headers, json=body if method != "GET" else None)
                _assert_secured(response, f"{who} {method} {path} {body}")

    # The error paths no route of the console runs: unknown assets, the trailing slash, bad bodies, the throttle.
    for path in ("/console/assets/nope.js", "/console/", "/console/api/nope", "/console/oidc/login", "/dashboard"):
        _assert_secured(anonymous.get(path), path)
    assert anonymous.get("/console/").status_code in (307, 308)
    _assert_secured(anonymous.post("/console/api/session", content=b"{not json"), "bad json")
    _assert_secured(anonymous.post("/console/api/session", json={"token": ""}), "422")
    created = tenant.write("POST", "/console/api/portal/keys", json={"name": "cached?"})
    assert created.status_code == 201 and created.json()["key"].startswith("tg-")
    _assert_secured(created, "a created key")
    assert created.headers["cache-control"] == "no-store"
    rotated = tenant.write("POST", f"/console/api/portal/keys/{created.json()['id']}/rotate", json={})
    assert rotated.status_code == 201 and rotated.headers["cache-control"] == "no-store"
    _assert_secured(rotated, "a rotated key")


_INTERNALS = "postgresql://tenantgate:hunter2@db.internal:5432"


def _broken(*_: object, **__: object) -> Any:
    raise RuntimeError(f"connection to {_INTERNALS} refused")


def _broken_dependency() -> AdminIdentity:
    return _broken()  # type: ignore[no-any-return]


def test_an_unhandled_error_under_the_console_still_carries_its_headers_and_says_nothing_inside(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug or an outage (here: a dependency, a route and a store call made to raise) is a 500 in OpenAI's shape,
    with the console's security headers and no-store, and nothing of the exception in the body."""
    app = create_app(make_settings(database_url=sqlite_url))
    tenant = AdminIdentity(token_id="tok_broken", role=AdminRole.TENANT, tenant_id="ten_broken")
    with ServedApp(app) as served:
        # A connection per request: uvicorn closes one whose request raised, as it should.
        http = httpx.Client(base_url=served.url, timeout=30, headers={"Connection": "close"})
        app.api.dependency_overrides[portal.tenant_identity] = _broken_dependency
        failures = [http.get("/console/api/portal/tenant")]
        monkeypatch.setattr(console_routes, "settings_of", _broken)
        failures.append(http.get("/console/api/config"))
        app.api.dependency_overrides[portal.tenant_identity] = lambda: tenant
        monkeypatch.setattr(portal.key_service, "list_keys", _broken)
        failures.append(http.get("/console/api/portal/keys"))
        monkeypatch.setattr(portal.service, "live_tenant", _broken)
        failures.append(http.post("/console/api/portal/keys", json={"name": "x"}))
        for response in failures:
            what = f"{response.request.method} {response.request.url.path}"
            _error(response, 500, "internal_error")
            _assert_secured(response, what)
            assert response.headers["cache-control"] == "no-store", what
            assert response.headers["x-request-id"].startswith("req_"), what  # for the operator to find it by
            assert "hunter2" not in response.text and "RuntimeError" not in response.text, what
        assert http.get("/console/api/config").status_code == 500  # and it still answers


def test_secrets_from_the_admin_api_are_never_cached(console_gateway: Gateway) -> None:
    gateway = console_gateway
    tenant = gateway.create_tenant(f"no-store-{time.time_ns()}")
    for method, path, body in (
        ("POST", f"/admin/tenants/{tenant['id']}/keys", {"name": "k"}),
        ("POST", "/admin/tokens", {"name": "t", "role": "billing"}),
        ("GET", "/admin/tenants", None),
        ("POST", "/admin/tokens", {"name": "t", "role": "nope"}),
        ("GET", "/admin/nope", None),
    ):
        response = gateway.admin(method, path, json=body)
        assert response.headers.get("cache-control") == "no-store", (path, response.status_code)
    created = gateway.admin("POST", "/admin/tokens", json={"name": "t2", "role": "billing"})
    rotated = gateway.admin("POST", f"/admin/tokens/{created.json()['id']}/revoke")
    assert rotated.headers["cache-control"] == "no-store"
    # Not a blanket rule: the proxy's and the usage API's responses are not the console's to decide.
    assert "content-security-policy" not in httpx.get(gateway.url + "/healthz").headers


def test_revoking_a_tenant_token_is_in_that_tenants_audit_log(console_gateway: Gateway) -> None:
    gateway = console_gateway
    tenant = gateway.create_tenant(f"audited-{time.time_ns()}")
    token = _tenant_token(gateway, tenant["id"])
    assert gateway.admin("POST", f"/admin/tokens/{token['id']}/revoke").status_code == 200
    entries = gateway.admin("GET", "/admin/audit", params={"tenant_id": tenant["id"]}).json()["data"]
    assert [e["action"] for e in entries if e["target_id"] == token["id"]] == [
        "admin_token.revoke",
        "admin_token.create",
    ]


def test_a_changed_tenant_endpoint_is_visible_in_the_audit_log(console_gateway: Gateway) -> None:
    gateway = console_gateway
    tenant = gateway.create_tenant(f"byok-path-{time.time_ns()}")
    path = f"/admin/tenants/{tenant['id']}/upstream-keys/default"
    gateway.runtime.upstream_guard.resolver = TableResolver({"resource.example.com": ["20.30.40.50"]})
    for base_url in ("https://resource.example.com/v1", "https://resource.example.com/other/v1"):
        response = gateway.admin("PUT", path, json={"api_key": "sk-tenant-secret-0001", "base_url": base_url})
        assert response.status_code == 200, response.text
    entries = gateway.admin("GET", "/admin/audit", params={"tenant_id": tenant["id"]}).json()["data"]
    changed = next(e for e in entries if e["action"] == "upstream_key.set" and e["before"] is not None)
    assert changed["before"]["base_url"] == "https://resource.example.com/v1"
    assert changed["after"]["base_url"] == "https://resource.example.com/other/v1"
    assert "sk-tenant-secret" not in str(entries)


@pytest.mark.parametrize("extra", [{"api_key_2": "x"}, {"upstream": "other"}, {"headers": {"x": "y"}}])
def test_setting_an_upstream_key_refuses_unknown_fields(console_gateway: Gateway, extra: dict[str, Any]) -> None:
    gateway = console_gateway
    tenant = gateway.create_tenant(f"byok-extra-{time.time_ns()}")
    path = f"/admin/tenants/{tenant['id']}/upstream-keys/default"
    _error(gateway.admin("PUT", path, json={"api_key": "sk-tenant-secret-0002", **extra}), 422)
    assert gateway.admin("GET", path.rsplit("/", 1)[0]).json() == []


def test_single_sign_on_callbacks_share_the_surface_throttle(sqlite_url: str) -> None:
    settings = make_settings(
        database_url=sqlite_url,
        admin_ip_rate_limit="5/minute",
        console_oidc_issuer="http://127.0.0.1:9",  # never asked: a callback without its flow stops before
        console_oidc_client_id="tenantgate-console",
    )
    with ServedApp(create_app(settings)) as served:
        http = httpx.Client(base_url=served.url, follow_redirects=False)
        answers = [http.get("/console/oidc/callback", params={"code": "bogus", "state": "x"}) for _ in range(8)]
    assert [a.status_code for a in answers[:5]] == [303] * 5
    assert answers[-1].status_code == 429 and answers[-1].json()["error"]["code"] == "rate_limit_exceeded"
    _assert_secured(answers[-1], "a throttled callback")


def test_a_suspended_tenants_console_says_so(console_gateway: Gateway, browser: Browser) -> None:
    gateway = console_gateway
    key = gateway.new_key("suspended-page")
    watched = Watched(browser, gateway.url)
    page = watched.sign_in(_tenant_token(gateway, key["tenant_id"])["token"])
    assert gateway.admin("POST", f"/admin/tenants/{key['tenant_id']}/suspend").status_code == 200
    page.reload()
    expect(page.locator("#sign-in")).to_contain_text("This tenant is suspended. Contact the platform operator.")
    expect(page.locator("#sign-out")).to_be_hidden()
    page.goto(gateway.url + "/console?sign_in_error=Visit%20https://evil.example")
    expect(page.locator("#sign-in-problem")).to_have_text(
        "Single sign-on did not complete. Try again, or sign in with a token."
    )
    watched.shot("suspended-tenant")
    watched.close()
