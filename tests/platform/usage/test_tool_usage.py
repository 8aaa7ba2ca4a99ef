"""Hosted tools of the Responses API metered per call and per session, once, end to end: the official SDK calls
the gateway (real Postgres and Redis) with web search, file search and code interpreter tools, plain, streamed
and in the background; the calls and their cost show in the Usage API, the Costs API and the invoice, once."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush, tenant_sdk

MODEL = "gpt-4o-mini"
WEB: dict[str, Any] = {"type": "web_search"}
FILES: dict[str, Any] = {"type": "file_search", "vector_store_ids": []}
CODE: dict[str, Any] = {"type": "code_interpreter", "container": {"type": "auto"}}


@pytest.fixture
def gateway(
    gateway_factory: Callable[..., Gateway], postgres_url: str, redis_url: str, redis_prefix: str, dev_upstream: str
) -> Gateway:
    return gateway_factory(
        database_url=postgres_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        upstream_base_url=dev_upstream,
        metering_flush_interval_seconds=0.2,
    )


def _results(page: Any) -> list[Any]:
    return [result for bucket in page.data for result in bucket.results]


@pytest.mark.slow
def test_tool_calls_are_metered_once_and_priced_per_call_and_session(gateway: Gateway) -> None:
    key = gateway.new_key("searcher")
    other = gateway.new_key("bystander")
    client = gateway.client(key["key"])
    started = int(time.time()) // 60 * 60 - 60

    plain = client.responses.create(model=MODEL, input="What is new?", tools=[WEB, FILES])
    assert [item.type for item in plain.output[:2]] == ["web_search_call", "file_search_call"]
    with client.responses.create(model=MODEL, input="Plot it.", tools=[WEB, CODE], stream=True) as stream:
        kinds = next(event.response.output for event in stream if event.type == "response.completed")
    assert [item.type for item in kinds[:2]] == ["web_search_call", "code_interpreter_call"]
    queued = client.responses.create(model=MODEL, input="Later.", tools=[WEB], background=True)
    for _ in range(3):  # a background response's completion is billed once, however often it is seen
        done = client.responses.retrieve(queued.id)
    assert done.status == "completed"
    client.responses.retrieve(plain.id)  # a read of a stored response: nothing billed again
    gateway.client(other["key"]).responses.create(model=MODEL, input="No tools.")

    flush(gateway)
    billed = [e for e in all_events(gateway) if e["api_key_id"] == key["id"] and e["billable"]]
    assert sorted((e["web_search_calls"], e["file_search_calls"], e["code_interpreter_sessions"]) for e in billed) == [
        (1, 0, 0),
        (1, 0, 1),
        (1, 1, 0),
    ]
    assert all(e["unpriced"] is None for e in billed)

    usage = tenant_sdk(gateway, key["key"]).admin.organization.usage
    web = _results(usage.web_search_calls(start_time=started, bucket_width="1h"))
    assert [(r.object, r.num_requests, r.num_model_requests) for r in web] == [
        ("organization.usage.web_searches.result", 3, 3)
    ]
    files = _results(usage.file_search_calls(start_time=started, bucket_width="1h"))
    assert [(r.object, r.num_requests) for r in files] == [("organization.usage.file_searches.result", 1)]
    sessions = _results(usage.code_interpreter_sessions(start_time=started, bucket_width="1h"))
    assert [r.num_sessions for r in sessions] == [1]
    # The bystander searched nothing: its key sees no tool usage at all.
    theirs = tenant_sdk(gateway, other["key"]).admin.organization.usage
    assert _results(theirs.web_search_calls(start_time=started, bucket_width="1h")) == []

    costs = usage.costs(start_time=started // 86400 * 86400, group_by=["line_item"])
    items = {r.line_item: Decimal(str(r.amount.value)) for r in _results(costs) if r.amount is not None}
    assert items[f"{MODEL}, web search tool calls"] == Decimal("0.03")  # 3 calls at 10.00 per 1,000
    assert items[f"{MODEL}, file search tool calls"] == Decimal("0.0025")  # 1 call at 2.50 per 1,000
    assert items[f"{MODEL}, code interpreter sessions"] == Decimal("0.03")  # 1 session at 0.03
    total = _results(usage.costs(start_time=started // 86400 * 86400))
    assert Decimal(str(total[0].amount.value)) == pytest.approx(sum(items.values()))

    invoices = gateway.admin(
        "GET", "/admin/usage/invoices", params={"start_time": started, "end_time": int(time.time()) + 60}
    ).json()["data"]
    (invoice,) = [i for i in invoices if i["tenant_id"] == key["tenant_id"]]
    (line,) = invoice["lines"]
    assert (line["web_search_calls"], line["file_search_calls"], line["code_interpreter_sessions"]) == (3, 1, 1)
    assert line["web_search_cost_nano_usd"] == 30_000_000 and line["code_interpreter_cost_nano_usd"] == 30_000_000
    assert line["cost_nano_usd"] == sum(int(Decimal(e["cost_usd"]) * 10**9) for e in billed)  # the ledger
