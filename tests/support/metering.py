"""Helpers for tests of usage metering: flush the writer of a served gateway, read what it stored."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai

from tests.support.gateway import Gateway


def flush(gateway: Gateway, timeout: float = 30) -> int:
    """Write everything the gateway spooled so far; runs on the server's own event loop."""
    writer = gateway.runtime.metering.writer
    assert writer.loop is not None, "metering writer not started"
    return asyncio.run_coroutine_threadsafe(writer.flush(), writer.loop).result(timeout)


def admin_sdk(gateway: Gateway) -> openai.OpenAI:
    """The official SDK's admin client, authenticated with the gateway's admin token."""
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", admin_api_key=gateway.admin_token, max_retries=0)


def tenant_sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    """The SDK's admin client authenticated with a tenant key: it sees its own tenant only."""
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, admin_api_key=key, max_retries=0)


def all_events(gateway: Gateway, **params: Any) -> list[dict[str, Any]]:
    """Every stored event, through the admin export (following cursors)."""
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"limit": 1000, **params, **({"after": cursor} if cursor else {})}
        response = gateway.admin("GET", "/admin/usage/events", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        events.extend(page["data"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return events


def get(gateway: Gateway, path: str, token: str, **params: Any) -> httpx.Response:
    return httpx.get(gateway.url + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def make_event(**fields: Any) -> dict[str, Any]:
    """A spooled usage event as the hook writes it (before pricing)."""
    import time

    from tenantgate.ids import new_id

    event: dict[str, Any] = {
        "id": new_id("evt"),
        "request_id": new_id("req"),
        "occurred_at": time.time(),
        "tenant_id": "ten_a",
        "api_key_id": "key_a",
        "endpoint": "/v1/chat/completions",
        "category": "completions",
        "model": "gpt-4o-mini",
        "upstream": "default",
        "upstream_model": None,
        "response_model": "gpt-4o-mini",
        "status": 200,
        "stream": False,
        "billable": True,
        "usage_source": "upstream",
        "input_tokens": 10,
        "cached_input_tokens": 0,
        "output_tokens": 5,
        "reasoning_tokens": 0,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "image_tokens": 0,
        "quantity": 0,
        "latency_ms": 12,
        "ttft_ms": None,
        "client_disconnected": False,
        "error_type": None,
        "attempts": 1,
    }
    event.update(fields)
    return event


def seed(database_url: str, events: list[dict[str, Any]]) -> int:
    """Price and store events directly (as the writer would), for tests of the read side."""
    from tenantgate.database import create_engine
    from tenantgate.tenants.metering.pricing import PriceBook
    from tenantgate.tenants.metering.store import row_of, store_for
    from tenantgate.tenants.metering.writer import price_event

    async def write() -> int:
        engine = create_engine(database_url)
        store = store_for(engine)
        try:
            book = PriceBook.load()
            return await store.write([row_of(price_event(book, dict(event))) for event in events])
        finally:
            await store.close()
            await engine.dispose()

    return asyncio.run(write())
