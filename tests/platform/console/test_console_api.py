"""The console's HTTP surface without a browser: pages and headers, sessions and CSRF, roles, and tenant isolation
of every JSON route a tenant session can reach (with generated ids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantgate.commands import devsetup
from tenantgate.platform.app import create_app
from tenantgate.platform.console.cookies import SESSION_COOKIE
from tenantgate.platform.console.routes import CONSOLE_PATH
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.platform.console.conftest import Console
from tests.platform.console.conftest import openai_error as _error
from tests.support.gateway import Gateway
from tests.support.server import ServedApp

MESSAGES = [{"role": "user", "content": "console api"}]


def test_page_and_assets_are_public_hold_no_data_and_forbid_inline_script(console_gateway: Gateway) -> None:
    url = console_gateway.url
    assert devsetup.CONSOLE_PATH == CONSOLE_PATH  # what `serve` prints is where the console is
    page = httpx.get(url + "/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    scripts = [part.split('"')[1] for part in page.text.split("src=")[1:]]
    assert scripts == ["/console/assets/console.js"]
    for path in (*scripts, "/console/assets/console.css"):
        asset = httpx.get(url + path)
        assert asset.status_code == 200 and "tenantgate" not in asset.headers.get("set-cookie", "")
    for response in (page, httpx.get(url + scripts[0])):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    for bad in ("../routes.py", "index.html", "..%2Froutes.py", "console.js.map"):
        _error(httpx.get(f"{url}/console/assets/{bad}"), 404)
    moved = httpx.get(url + "/dashboard")
    assert moved.status_code == 308 and moved.headers["location"] == "/console"


def test_sign_in_sets_a_host_only_secure_httponly_strict_cookie(console_gateway: Gateway) -> None:
    url = console_gateway.url
    _error(httpx.post(url + "/console/api/session", json={"token": "tga-wrong"}), 401, "invalid_api_key")
    _error(httpx.post(url + "/console/api/session", json={"token": ""}), 422)
    _error(httpx.get(url + "/console/api/session"), 401)
    response = httpx.post(url + "/console/api/session", json={"token": ADMIN_TOKEN})
    assert response.status_code == 200 and response.json() == {"role": "admin", "tenant_id": None}
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=tgs-")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "path", "max-age", "samesite"} <= attributes and "domain" not in attributes
    assert "samesite=strict" in cookie.lower() and "path=/;" in cookie.lower() + ";"
    assert ADMIN_TOKEN not in cookie


def test_writes_with_a_session_need_its_csrf_token(console_gateway: Gateway) -> None:
    console = Console(console_gateway, ADMIN_TOKEN)
    body = {"name": "csrf-check"}
    _error(console.http.post("/admin/plans", json=body), 403, "csrf_failed")
    _error(console.write("POST", "/admin/plans", json=body, headers={"x-csrf-token": "0" * 64}), 403, "csrf_failed")
    other = Console(console_gateway, ADMIN_TOKEN)  # another session's token is no good either
    _error(console.write("POST", "/admin/plans", json=body, headers={"x-csrf-token": other.csrf}), 403, "csrf_failed")
    assert console.write("POST", "/admin/plans", json=body).status_code == 201
    assert console.get("/admin/plans").status_code == 200  # reads need none
    # A bearer token is no ambient credential: no CSRF token needed (or possible).
    assert console_gateway.admin("POST", "/admin/plans", json={"name": "csrf-bearer"}).status_code == 201


def test_sign_out_ends_the_session_on_the_server(console_gateway: Gateway) -> None:
    console = Console(console_gateway, ADMIN_TOKEN)
    stolen = console.cookie
    assert console.write("DELETE", "/console/api/session").status_code == 204
    replay = httpx.get(console_gateway.url + "/console/api/overview", cookies={SESSION_COOKIE: stolen})
    _error(replay, 401)


def test_a_session_ends_when_its_token_is_revoked(console_gateway: Gateway) -> None:
    token = console_gateway.admin("POST", "/admin/tokens", json={"name": "short-lived", "role": "admin"}).json()
    console = Console(console_gateway, token["token"])
    assert console.get("/console/api/overview").status_code == 200
    assert console_gateway.admin("POST", f"/admin/tokens/{token['id']}/revoke").status_code == 200
    _error(console.get("/console/api/overview"), 401)


def test_a_bootstrap_session_ends_when_the_bootstrap_token_changes(sqlite_url: str, tmp_path: object) -> None:
    first = make_settings(database_url=sqlite_url, admin_ip_rate_limit="10000/minute")
    with ServedApp(create_app(first)) as served:
        signed_in = httpx.post(served.url + "/console/api/session", json={"token": ADMIN_TOKEN})
        cookie = signed_in.cookies[SESSION_COOKIE]
        assert httpx.get(served.url + "/console/api/overview", cookies={SESSION_COOKIE: cookie}).status_code == 200
    changed = make_settings(database_url=sqlite_url, admin_token="another-admin-token-0123456789")
    with ServedApp(create_app(changed)) as served:
        _error(httpx.get(served.url + "/console/api/overview", cookies={SESSION_COOKIE: cookie}), 401)


def test_roles_are_enforced_by_the_server(console_gateway: Gateway) -> None:
    gateway = console_gateway
    key = gateway.new_key("roles")
    billing = gateway.admin("POST", "/admin/tokens", json={"name": "finance", "role": "billing"}).json()["token"]
    tenant = gateway.admin(
        "POST", "/admin/tokens", json={"name": "t", "role": "tenant", "tenant_id": key["tenant_id"]}
    ).json()["token"]
    reader, own = Console(gateway, billing), Console(gateway, tenant)
    for path in ("/console/api/overview", "/console/api/series?window=7d", "/metrics", "/admin/usage/invoices"):
        assert reader.get(path).status_code == 200, path
        _error(own.get(path), 403, "insufficient_role")
    _error(reader.write("POST", "/admin/tenants", json={"name": "nope"}), 403, "insufficient_role")
    _error(reader.get("/console/api/portal/keys"), 403, "insufficient_role")
    for path in ("/admin/tenants", "/admin/keys", f"/admin/tenants/{key['tenant_id']}/keys", "/admin/audit"):
        _error(own.get(path), 403, "insufficient_role")
    # The same tenant token as a bearer: no more than through the console.
    _error(httpx.get(gateway.url + "/admin/tenants", headers={"Authorization": f"Bearer {tenant}"}), 403)
    assert (
        httpx.get(gateway.url + "/console/api/portal/keys", headers={"Authorization": f"Bearer {tenant}"}).json()[
            "data"
        ][0]["id"]
        == key["id"]
    )


def test_tenant_tokens_name_a_live_tenant(console_gateway: Gateway) -> None:
    gateway = console_gateway
    _error(gateway.admin("POST", "/admin/tokens", json={"name": "t", "role": "tenant"}), 422)
    _error(gateway.admin("POST", "/admin/tokens", json={"name": "t", "role": "billing", "tenant_id": "ten_x"}), 422)
    _error(gateway.admin("POST", "/admin/tokens", json={"name": "t", "role": "tenant", "tenant_id": "ten_nope"}), 404)
    key = gateway.new_key("soon-gone")
    token = gateway.admin(
        "POST", "/admin/tokens", json={"name": "t", "role": "tenant", "tenant_id": key["tenant_id"]}
    ).json()["token"]
    console = Console(gateway, token)
    assert gateway.admin("POST", f"/admin/tenants/{key['tenant_id']}/suspend").status_code == 200
    _error(console.get("/console/api/portal/keys"), 403, "tenant_suspended")
    assert gateway.admin("DELETE", f"/admin/tenants/{key['tenant_id']}").status_code == 200
    _error(console.get("/console/api/portal/keys"), 401)
    _error(httpx.post(gateway.url + "/console/api/session", json={"token": token}), 401)


def test_series_refuses_bad_parameters_in_openai_shape(console_gateway: Gateway) -> None:
    console = Console(console_gateway, ADMIN_TOKEN)
    _error(console.get("/console/api/series", params={"window": "2h"}), 400)
    _error(console.get("/console/api/series", params={"tenant": "x" * 201}), 400)
    _error(console.get("/console/api/series", params={"model": "a\tb"}), 400)
    _error(console.get("/console/api/series?tenant=%00"), 400)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tenant=st.text(max_size=300),
    model=st.text(max_size=50),
    key=st.text(max_size=50),
    window=st.sampled_from(["15m", "1h", "24h", "7d", "1d", ""]),
)
def test_series_answers_any_filter_without_a_server_error(
    console_gateway: Gateway, tenant: str, model: str, key: str, window: str
) -> None:
    response = console_gateway.admin(
        "GET", "/console/api/series", params={"window": window, "tenant": tenant, "model": model, "key": key}
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        nul = "\x00" in tenant + model + key  # refused before routing, as everywhere (platform/nulguard.py)
        assert response.json()["error"]["param"] in (("window", "tenant", "model", "key") if not nul else (None,))


def _tenant_with_traffic(gateway: Gateway, name: str) -> tuple[dict[str, str], str]:
    key = gateway.new_key(name)
    gateway.client(key["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    token = gateway.admin(
        "POST", "/admin/tokens", json={"name": name, "role": "tenant", "tenant_id": key["tenant_id"]}
    ).json()["token"]
    return key, token


def test_a_tenant_session_never_reaches_another_tenants_keys(console_gateway: Gateway) -> None:
    gateway = console_gateway
    mine, token = _tenant_with_traffic(gateway, "iso-mine")
    theirs, _ = _tenant_with_traffic(gateway, "iso-theirs")
    console = Console(gateway, token)
    assert [k["id"] for k in console.get("/console/api/portal/keys").json()["data"]] == [mine["id"]]
    assert console.get(f"/console/api/portal/keys/{mine['id']}/limits").status_code == 200
    for method, path in (
        ("GET", f"/console/api/portal/keys/{theirs['id']}/limits"),
        ("POST", f"/console/api/portal/keys/{theirs['id']}/revoke"),
        ("POST", f"/console/api/portal/keys/{theirs['id']}/rotate"),
    ):
        response = console.write(method, path, json={}) if method == "POST" else console.get(path)
        _error(response, 404, "key_not_found")
        assert theirs["tenant_id"] not in response.text
    assert gateway.admin("GET", f"/admin/keys/{theirs['id']}").json()["status"] == "active"
    # Limits and body fields cannot smuggle another tenant in: the tenant comes from the session.
    _error(console.write("POST", "/console/api/portal/keys", json={"tenant_id": theirs["tenant_id"]}), 422)
    _error(console.write("POST", "/console/api/portal/keys", json={"rpm": 1_000_000}), 422)
    created = console.write("POST", "/console/api/portal/keys", json={"name": "self-made"}).json()
    assert created["tenant_id"] == mine["tenant_id"] and created["key"].startswith("tg-")
    # The usage API scopes the session to its tenant, whatever it names.
    usage = console.get(
        "/v1/organization/usage/completions",
        params={"start_time": 0, "bucket_width": "1d", "limit": 31, "group_by": "project_id"},
    ).json()
    projects = {r["project_id"] for bucket in usage["data"] for r in bucket["results"]}
    assert projects <= {mine["tenant_id"]}


@pytest.fixture(scope="module")
def tenant_token(console_gateway: Gateway) -> str:
    return _tenant_with_traffic(console_gateway, "generated")[1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key_id=st.text(min_size=1, max_size=80).filter(lambda s: "/" not in s and "\x00" not in s))
def test_generated_key_ids_never_leak_or_fail(console_gateway: Gateway, tenant_token: str, key_id: str) -> None:
    gateway = console_gateway
    headers = {"Authorization": f"Bearer {tenant_token}"}
    response = httpx.get(f"{gateway.url}/console/api/portal/keys/{quote(key_id, safe='')}/limits", headers=headers)
    assert response.status_code in (400, 404), (key_id, response.status_code, response.text)
    assert response.json()["error"]["message"]


def test_without_an_issuer_there_is_no_single_sign_on(console_gateway: Gateway) -> None:
    assert httpx.get(console_gateway.url + "/console/api/config").json() == {"oidc": False}
    _error(httpx.get(console_gateway.url + "/console/oidc/login"), 404)


class FakePrometheus:
    """Prometheus' /api/v1/rules with one of the shipped rules firing and a rule of someone else's."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        rules = [
            {"name": "TenantgateHighErrorRate", "type": "alerting", "state": "firing",
             "labels": {"severity": "critical"}, "annotations": {"summary": "More than 5% of requests fail"},
             "alerts": [{}]},
            {"name": "TenantgateRedisUnreachable", "type": "alerting", "state": "inactive", "labels": {}, "alerts": []},
            {"name": "NodeDiskFull", "type": "alerting", "state": "firing", "labels": {}, "alerts": [{}]},
        ]  # fmt: skip
        body = orjson.dumps({"status": "success", "data": {"groups": [{"name": "g", "rules": rules}]}})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def test_alert_states_come_from_the_configured_prometheus_and_grafana_is_linked(sqlite_url: str) -> None:
    with ServedApp(FakePrometheus(), lifespan="off") as prometheus:
        settings = make_settings(
            database_url=sqlite_url,
            console_prometheus_url=prometheus.url,
            console_grafana_url="https://grafana.example.com/",
        )
        with ServedApp(create_app(settings)) as served:
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            overview = httpx.get(served.url + "/console/api/overview", headers=headers).json()
    rules = overview["alerts"]["rules"]
    assert [(r["name"], r["state"]) for r in rules] == [
        ("TenantgateHighErrorRate", "firing"),
        ("TenantgateRedisUnreachable", "inactive"),
    ]
    assert rules[0]["severity"] == "critical" and rules[0]["active"] == 1
    assert overview["grafana"][0] == {"title": "Overview", "url": "https://grafana.example.com/d/tenantgate-overview"}


def test_an_unreachable_prometheus_is_said_not_hidden(console_gateway: Gateway, sqlite_url: str) -> None:
    settings = make_settings(database_url=sqlite_url, console_prometheus_url="http://127.0.0.1:9")
    with ServedApp(create_app(settings)) as served:
        overview = httpx.get(served.url + "/console/api/overview", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert overview.status_code == 200 and overview.json()["alerts"] == {"error": "Prometheus did not answer"}
    assert console_gateway.admin("GET", "/console/api/overview").json()["alerts"] is None  # unset: no panel


def test_the_readmes_first_screen_says_how_to_open_the_console() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text().splitlines()
    first_screen = "\n".join(readme[:40])
    assert f"http://127.0.0.1:8080{CONSOLE_PATH}" in first_screen and "admin token" in first_screen


def test_api_docs_load_swagger_ui_from_the_gateway_not_a_cdn(console_gateway: Gateway) -> None:
    page = httpx.get(console_gateway.url + "/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    linked = [
        part.split('"')[1] for part in page.text.replace("'", '"').split("src=")[1:] + page.text.split("href=")[1:]
    ]
    assert "/console/assets/swagger-ui-bundle.js" in linked and "/console/assets/swagger-ui.css" in linked
    assert "//" not in " ".join(linked) and "jsdelivr" not in page.text  # nothing from another host
    for path, kind in (("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css")):
        asset = httpx.get(f"{console_gateway.url}/console/assets/{path}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        assert b"sourceMappingURL" not in asset.content  # no map is shipped, so none is asked for
    # ReDoc, FastAPI's other page, would load from a CDN: not served.
    assert httpx.get(console_gateway.url + "/redoc").status_code == 404
