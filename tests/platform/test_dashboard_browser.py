"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Needs ``apt-get install -y chromium`` (or TENANTGATE_TEST_CHROMIUM pointing at a Chromium binary); Playwright's own
browser download is not used. The screenshot lands in build/test-artifacts/dashboard.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantgate import database
from tenantgate.platform.app import create_app
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.support.gateway import Gateway
from tests.support.server import ServedApp

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
MESSAGES = [{"role": "user", "content": "numbers for the dashboard"}]


def _chromium() -> str:
    path = os.environ.get("TENANTGATE_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("the dashboard browser test needs Debian's chromium: apt-get install -y chromium")
    return path


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Request it last: sync Playwright runs an event loop on this thread, so fixtures using asyncio.run go first."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=_chromium(),
            args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--no-first-run", "--disable-extensions"],
        )  # fmt: skip
        yield browser
        browser.close()


async def _send_json(send: Send, status: int, body: Any) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": orjson.dumps(body)})


class WithUsageApi:
    """The gateway plus an OpenAI-shaped usage and costs API (two pages of usage), as the metering work will add."""

    def __init__(self, app: ASGIApp, usage_pages: list[dict[str, Any]], costs: dict[str, Any]) -> None:
        self.app = app
        self.usage_pages = usage_pages
        self.costs = costs
        self.queries: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/organization/"):
            await self.app(scope, receive, send)
            return
        self.queries.append(scope["query_string"].decode())
        headers = dict(scope["headers"])
        status, body = 200, self.costs
        if headers.get(b"authorization") != f"Bearer {ADMIN_TOKEN}".encode():
            status, body = 401, {"error": {"message": "bad token", "type": "invalid_request_error"}}
        elif scope["path"] == "/v1/organization/usage/completions":
            body = self.usage_pages[1 if b"page=" in scope["query_string"] else 0]
        payload = orjson.dumps(body)
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": payload})


def _usage_result(tenant: str, model: str, requests: int, tokens: int) -> dict[str, Any]:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": tokens,
        "input_cached_tokens": 0,
        "output_tokens": tokens // 2,
        "num_model_requests": requests,
        "project_id": tenant,
        "api_key_id": None,
        "model": model,
    }


def _page(data: list[dict[str, Any]], next_page: str | None) -> dict[str, Any]:
    return {"object": "page", "data": data, "has_more": next_page is not None, "next_page": next_page}


@pytest.fixture
def served(tmp_path: Path, dev_upstream: str) -> Iterator[tuple[Gateway, WithUsageApi]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dash.db'}"
    database.upgrade(url)
    settings = make_settings(database_url=url, upstream_base_url=dev_upstream)
    app = create_app(settings)
    bucket = {"object": "bucket", "start_time": 1730419200, "end_time": 1730422800}
    usage = [
        _page([{**bucket, "results": [_usage_result("ten_usage_a", "gpt-4o-mini", 4, 1000)]}], "page_2"),
        _page([{**bucket, "results": [_usage_result("ten_usage_a", "gpt-4o-mini", 3, 500)]}], None),
    ]
    costs = _page(
        [{**bucket, "results": [{"object": "organization.costs.result", "amount": {"value": 0.06, "currency": "usd"},
                                 "line_item": None, "project_id": "ten_usage_a"}]}],
        None,
    )  # fmt: skip
    wrapped = WithUsageApi(app, usage, costs)
    with ServedApp(wrapped) as server:
        yield Gateway(server.url, ADMIN_TOKEN, settings, app.state.runtime), wrapped


def _row(page: Page, table: str, first_cell: str) -> list[str]:
    row = page.locator(f"#{table} tbody tr").filter(has=page.locator("td", has_text=first_cell)).first
    expect(row).to_be_visible()
    return [text.strip() for text in row.locator("td").all_inner_texts()]


def test_dashboard_signs_in_and_shows_the_numbers_the_api_returns(
    served: tuple[Gateway, WithUsageApi], browser: Browser
) -> None:
    gateway, usage_api = served
    first, second = gateway.new_key("browser-a"), gateway.new_key("browser-b")
    for _ in range(3):
        gateway.client(first["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(gateway.client(second["key"]).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))

    context = browser.new_context(viewport={"width": 1400, "height": 1300})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    response = page.goto(gateway.url + "/dashboard")
    assert response is not None and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()

    page.fill("#token", "not-the-admin-token")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("not accepted")
    problems.clear()  # the refused token's 401 is logged by the browser as a failed resource load

    page.fill("#token", ADMIN_TOKEN)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#app")).to_be_visible()
    summary = httpx.get(
        gateway.url + "/dashboard/api/summary", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ).json()
    tenants = {row["tenant"]: row for row in summary["tenants"]}

    row = _row(page, "tenants", first["tenant_id"])
    expected = tenants[first["tenant_id"]]
    assert row[1] == str(expected["requests"]) == "3"
    assert row[4] == f"{expected['input_tokens']:,}" and row[5] == f"{expected['output_tokens']:,}"
    assert _row(page, "tenants", second["tenant_id"])[1] == "1"
    assert _row(page, "models", "gpt-4o-mini")[1] == "3"
    expect(page.locator("#total-requests")).to_have_text(str(summary["totals"]["requests"]))
    expect(page.locator("#total-output-tokens")).to_have_text(f"{summary['totals']['output_tokens']:,}")
    assert _row(page, "routes", "POST")[1:4] == ["/v1/chat/completions", "200", "4"]

    # The usage API's two pages are summed; the costs API's amount is shown as is.
    assert _row(page, "usage", "ten_usage_a")[1:] == ["gpt-4o-mini", "7", "1,500", "0", "750"]
    assert _row(page, "costs", "ten_usage_a")[1] == "0.0600 USD"
    assert any("group_by%5B%5D=project_id" in query for query in usage_api.queries)

    # A second poll turns counts into rates and a latency window.
    gateway.client(first["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    expect(page.locator("#total-requests")).to_have_text(str(summary["totals"]["requests"] + 1), timeout=15000)
    expect(page.locator("#card-rps")).not_to_have_text("…")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    page.reload()  # the token lives in the tab's sessionStorage
    expect(page.locator("#app")).to_be_visible()
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert problems == []
    context.close()


class WithoutUsageApi:
    """A gateway on which the usage API does not exist (404 in OpenAI's error shape)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/organization/"):
            body = orjson.dumps({"error": {"message": "Invalid URL", "type": "invalid_request_error"}})
            await send(
                {"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def test_dashboard_says_so_when_the_usage_api_is_missing(tmp_path: Path, browser: Browser) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}"
    page = browser.new_page()
    with ServedApp(WithoutUsageApi(create_app(make_settings(database_url=url)))) as server:
        page.goto(server.url + "/dashboard")
        page.fill("#token", ADMIN_TOKEN)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#app")).to_be_visible()
        expect(page.locator("#usage-status")).to_have_text("The usage API is not available on this gateway.")
        expect(page.locator("#costs-status")).to_have_text("The usage API is not available on this gateway.")
        expect(page.locator("#tenants tbody")).to_have_text("no data yet")
    page.close()
