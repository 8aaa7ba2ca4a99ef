"""The built-in dashboard's HTTP surface: token required for data, strict security headers, numbers from metrics."""

from __future__ import annotations

import httpx

from tests.conftest import ADMIN_TOKEN
from tests.support.gateway import Gateway
from tests.support.prometheus import scrape

MESSAGES = [{"role": "user", "content": "dashboard numbers"}]


def test_page_and_assets_carry_security_headers_and_no_data(gateway: Gateway) -> None:
    for path, kind in (
        ("/dashboard", "text/html"),
        ("/dashboard/assets/dashboard.js", "text/javascript"),
        ("/dashboard/assets/dashboard.css", "text/css"),
    ):
        response = httpx.get(gateway.url + path)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'none'" in csp
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(gateway.url + "/dashboard/assets/../routes.py").status_code == 404
    assert httpx.get(gateway.url + "/dashboard/assets/index.htm").status_code == 404


def test_summary_requires_a_billing_or_admin_token(gateway: Gateway) -> None:
    url = gateway.url + "/dashboard/api/summary"
    assert httpx.get(url).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    ok = httpx.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status_code == 200 and ok.headers["cache-control"] == "no-store"
    billing = gateway.admin("POST", "/admin/tokens", json={"name": "finance", "role": "billing"})
    assert billing.status_code == 201, billing.text
    read_only = httpx.get(url, headers={"Authorization": f"Bearer {billing.json()['token']}"})
    assert read_only.status_code == 200 and "totals" in read_only.json()


def test_summary_numbers_agree_with_metrics(gateway: Gateway) -> None:
    first, second = gateway.new_key("dash-a"), gateway.new_key("dash-b")
    answer = gateway.client(first["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    for _ in range(2):
        gateway.client(second["key"]).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    summary = gateway.admin("GET", "/dashboard/api/summary").json()
    metrics = scrape(gateway.url)

    tenants = {row["tenant"]: row for row in summary["tenants"]}
    assert tenants[first["tenant_id"]]["requests"] == 1 and tenants[second["tenant_id"]]["requests"] == 2
    assert answer.usage is not None
    assert tenants[first["tenant_id"]]["input_tokens"] == answer.usage.prompt_tokens
    assert tenants[first["tenant_id"]]["output_tokens"] == answer.usage.completion_tokens
    models = {row["model"]: row for row in summary["models"]}
    assert models["gpt-4o"]["requests"] == 2 and models["gpt-4o-mini"]["requests"] == 1
    assert summary["totals"]["requests"] == 3 and summary["totals"]["errors"] == 0
    assert summary["totals"]["output_tokens"] == metrics.total(
        "gen_ai_client_token_usage_sum", gen_ai_token_type="output"
    )
    assert 0 < summary["latency_seconds"]["p50"] <= summary["latency_seconds"]["p99"]
    assert summary["dependencies"] == {"database": 1.0}
    assert {"upstream": "default", "attempts": 3, "errors": 0, "retries": 0} in summary["upstreams"]
    routes = {(r["method"], r["route"], r["status"]): r["requests"] for r in summary["routes"]}
    assert routes[("POST", "/v1/chat/completions", "200")] == 3
    assert [w["pid"] for w in summary["workers"]] and summary["totals"]["workers"] == 1
