"""What the console's browser tests share: Debian's chromium found and launched, a watched page (script errors and
failed loads collected, screenshots saved as artifacts), and the gateway nudged to close a history frame or flush
its metering now rather than on its own schedule."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support.gateway import Gateway

ARTIFACTS = Path(__file__).resolve().parents[3] / "build" / "test-artifacts"
MESSAGES = [{"role": "user", "content": "numbers for the console"}]
# A check waits up to 10 s, not Playwright's 5: CI runs four test workers and their browsers on two cores.
expect.set_options(timeout=10_000)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip


def chromium() -> str:
    path = os.environ.get("TENANTGATE_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("the console's browser tests need Debian's chromium: apt-get install -y chromium")
    return path


class Watched:
    """A browser context and page whose script errors and failed requests are collected (a test ends with none)."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.context: BrowserContext = browser.new_context(viewport={"width": 1400, "height": 1100})
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))
        self.url = url

    def sign_in(self, token: str) -> Page:
        page = self.page
        page.goto(self.url + "/console")
        page.fill("#token", token)
        page.click("#sign-in-form button[type=submit]")
        expect(page.locator("#sign-out")).to_be_visible()
        expect(page.locator("nav a").first).to_be_visible()
        return page

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


def sample(gateway: Gateway) -> None:
    """Close a history frame now instead of waiting for the next 10 s boundary."""

    async def close_frame() -> None:
        gateway.runtime.telemetry.sample_history()

    asyncio.run_coroutine_threadsafe(close_frame(), gateway.loop).result(5)


def drain_metering(gateway: Gateway) -> None:
    async def flush() -> None:
        await gateway.runtime.metering.writer.flush()

    asyncio.run_coroutine_threadsafe(flush(), gateway.loop).result(10)
