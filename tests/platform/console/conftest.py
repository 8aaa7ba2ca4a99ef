"""One gateway per test module for the console's tests (on Postgres, with its own database): starting one costs
more than most of the tests that share it, and none of them depends on another's leftovers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from tenantgate import database
from tenantgate.platform.app import create_app
from tenantgate.platform.console.cookies import CSRF_HEADER, SESSION_COOKIE
from tenantgate.platform.serving import uvicorn_options
from tests.conftest import ADMIN_TOKEN, _create_pg_database, make_settings
from tests.platform.console.browsing import CHROMIUM_ARGS, chromium
from tests.support.gateway import Gateway
from tests.support.server import ServedApp


def openai_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    """``response`` is ``status`` with OpenAI's error shape (and ``code``, if given)."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code, error


@pytest.fixture(scope="module")
def console_gateway(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str, dev_upstream: str
) -> Iterator[Gateway]:
    url, drop = _create_pg_database(postgres_server)
    try:
        database.upgrade(url)
        settings = make_settings(
            database_url=url,
            upstream_base_url=dev_upstream,
            spool_dir=tmp_path_factory.mktemp("spool"),
            admin_ip_rate_limit="100000/minute",
        )
        app = create_app(settings)
        with ServedApp(app, **uvicorn_options(settings)) as served:
            assert served.loop is not None
            yield Gateway(served.url, ADMIN_TOKEN, settings, app.runtime, served.loop)
    finally:
        drop()


@pytest.fixture(scope="module")
def browser(console_gateway: Gateway) -> Iterator[Browser]:
    """After the gateway: sync Playwright runs an event loop on this thread, so fixtures using asyncio.run go first."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Console:
    """A signed-in console session, as the browser holds it: the cookie, and the CSRF token for writes."""

    def __init__(self, gateway: Gateway, token: str) -> None:
        self.gateway = gateway
        # The session cookie is Secure: httpx keeps it for http://127.0.0.1 only when told the cookie as is.
        self.http = httpx.Client(base_url=gateway.url, timeout=30)
        response = self.http.post("/console/api/session", json={"token": token})
        assert response.status_code == 200, response.text
        self.cookie = response.cookies[SESSION_COOKIE]
        self.http.cookies.set(SESSION_COOKIE, self.cookie)
        self.csrf = self.http.get("/console/api/session").json()["csrf_token"]

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def write(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {CSRF_HEADER: self.csrf, **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)
