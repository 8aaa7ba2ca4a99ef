"""Only model work is billable: reading, listing, deleting and cancelling stored responses, and model listings,
change no usage, cost or invoice; a background response is billed once, however often it is retrieved."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], postgres_url: str, dev_upstream: str) -> Gateway:
    return gateway_factory(database_url=postgres_url, upstream_base_url=dev_upstream)


def _bill(gateway: Gateway, tenant_id: str) -> tuple[list[dict[str, Any]], dict[str, Any], Any]:
    """(billable events, invoice of this month, total cost from the costs API) for one tenant."""
    flush(gateway)
    events = [e for e in all_events(gateway, tenant_id=tenant_id) if e["billable"]]
    invoices = gateway.admin("GET", "/admin/usage/invoices", params={"tenant_id": tenant_id}).json()["data"]
    costs = gateway.admin("GET", "/v1/organization/costs", params={"start_time": int(time.time()) - 86400})
    total = sum(r["amount"]["value"] for b in costs.json()["data"] for r in b["results"])
    return events, invoices, total


def test_reads_lists_deletes_and_model_listings_are_not_billed(gateway: Gateway) -> None:
    key = gateway.new_key("reader")
    client = gateway.client(key["key"])
    created = client.responses.create(model="gpt-4o-mini", input="remember this")
    before = _bill(gateway, key["tenant_id"])
    assert len(before[0]) == 1 and before[0][0]["model"] == "gpt-4o-mini"
    for _ in range(3):
        client.responses.retrieve(created.id)
        list(client.responses.input_items.list(created.id))
    client.models.list()
    client.models.retrieve("gpt-4o-mini")
    client.responses.delete(created.id)
    after = _bill(gateway, key["tenant_id"])
    assert after == before
    operations = [e for e in all_events(gateway, tenant_id=key["tenant_id"]) if not e["billable"]]
    assert {e["endpoint"] for e in operations} >= {
        "/v1/responses/{response_id}",
        "/v1/responses/{response_id}/input_items",
    }
    assert all(e["input_tokens"] == 0 and e["output_tokens"] == 0 for e in operations)


def test_a_background_response_is_billed_once_when_done(gateway: Gateway) -> None:
    key = gateway.new_key("background")
    client = gateway.client(key["key"])
    started = client.responses.create(model="gpt-4o-mini", input="work in the background", background=True)
    assert started.status in ("queued", "in_progress")
    assert _bill(gateway, key["tenant_id"])[0] == []  # nothing done yet, nothing billed
    deadline = time.monotonic() + 30
    done = client.responses.retrieve(started.id)
    while done.status not in ("completed", "failed", "incomplete", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.1)
        done = client.responses.retrieve(started.id)
    assert done.status == "completed" and done.usage is not None
    for _ in range(3):
        client.responses.retrieve(started.id)
    events, _, _ = _bill(gateway, key["tenant_id"])
    assert len(events) == 1
    assert events[0]["model"] == "gpt-4o-mini" and events[0]["usage_source"] == "upstream"
    assert events[0]["input_tokens"] == done.usage.input_tokens
    assert events[0]["output_tokens"] == done.usage.output_tokens
    assert events[0]["api_key_id"] == key["id"]
    with contextlib.suppress(openai.BadRequestError):  # a cancel shows the same final usage: the same event
        client.responses.cancel(started.id)
    assert len(_bill(gateway, key["tenant_id"])[0]) == 1
