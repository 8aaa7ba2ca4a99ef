"""A batch is billed once whatever its owner does with its output file: deleting it the moment a retrieve shows it
cannot leave the batch unbilled (the delete settles it first), and an output nobody can ever read (deleted upstream,
past the gateway) is billed from the batch's estimate after a bounded number of polls, never retried forever.
Real Postgres and Redis; the official SDK as the client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from tenantgate.devupstream import DevUpstream
from tests.conftest import UPSTREAM_KEY
from tests.platform.objects.batching import create, line, output_usage, upload_input, wait_ended, wait_until
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush
from tests.support.server import ServedApp

LINES = [line(f"c{i}", "gpt-4o", "hello world " * 50, max_tokens=50) for i in range(3)]


def _billed(gateway: Gateway, tenant_id: str) -> list[dict[str, Any]]:
    flush(gateway)
    return [e for e in all_events(gateway) if e["tenant_id"] == tenant_id and e["billable"]]


def _by_model(events: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for event in events:
        entry = totals.setdefault(event["model"], {"lines": 0, "input": 0, "output": 0})
        entry["lines"] += 1
        entry["input"] += event["input_tokens"]
        entry["output"] += event["output_tokens"]
    return totals


def _on_loop(gateway: Gateway, work: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(work, gateway.loop).result(30)


class _SlowContent:
    """An upstream that takes a while to start sending a file's content (a large output, a busy upstream)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/content"):
            await asyncio.sleep(1.5)
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def slow_content_upstream() -> Iterator[str]:
    with ServedApp(_SlowContent(DevUpstream(api_key=UPSTREAM_KEY, batch_seconds=1.0)), lifespan="off") as served:
        yield served.url + "/v1"


def test_deleting_the_output_file_as_soon_as_it_shows_does_not_escape_billing(
    objects_gateway: Callable[..., Gateway], slow_content_upstream: str
) -> None:
    # No poller in the way: the retrieve that shows the output file starts reading it, the caller deletes it first.
    gateway = objects_gateway(object_poll_seconds=3600, upstream_base_url=slow_content_upstream)
    control_key = gateway.new_key("control")
    control = gateway.client(control_key["key"])
    key = gateway.new_key("deleter")
    client = gateway.client(key["key"])
    expected_batch = wait_ended(control, create(control, upload_input(control, LINES)).id)
    assert expected_batch.output_file_id is not None
    expected = output_usage(control, expected_batch.output_file_id)

    batch = create(client, upload_input(client, LINES))
    output_file_id = None
    deadline = time.monotonic() + 30
    while output_file_id is None and time.monotonic() < deadline:
        output_file_id = client.batches.retrieve(batch.id).output_file_id
        time.sleep(0.02)
    assert output_file_id is not None
    # At once, and again while the gateway asks to wait (409): the file goes once its usage is recorded.
    for _ in range(50):
        try:
            assert client.files.delete(output_file_id).deleted is True
            break
        except openai.ConflictError as refused:
            assert refused.code == "batch_not_settled"
            time.sleep(0.2)
    else:
        raise AssertionError("the output file could never be deleted")
    events = wait_until(lambda: _billed(gateway, key["tenant_id"]), what="the batch's usage")
    assert len(events) == len(LINES) and all(e["batch"] and e["usage_source"] == "upstream" for e in events)
    assert _by_model(events) == expected
    time.sleep(1)
    assert len(_billed(gateway, key["tenant_id"])) == len(LINES)  # and once


def test_an_output_that_can_never_be_read_is_billed_from_the_estimate_after_a_few_polls(
    objects_gateway: Callable[..., Gateway], fast_upstream: str
) -> None:
    gateway = objects_gateway(object_poll_seconds=0.2)
    settler = gateway.runtime.settler
    settler.unreadable_polls = 3
    _on_loop(gateway, gateway.runtime.poller.close())  # nobody looks until the output is gone
    key = gateway.new_key("byok-like")
    client = gateway.client(key["key"])
    batch = create(client, upload_input(client, LINES))
    # Deleted at the upstream, past the gateway (as a tenant can do with its own key in its own account).
    upstream = httpx.Client(base_url=fast_upstream, headers={"Authorization": f"Bearer {UPSTREAM_KEY}"}, timeout=30)
    ended = wait_until(
        lambda: (b := upstream.get(f"/batches/{batch.id}").json()).get("output_file_id") and b, what="the batch's end"
    )
    assert upstream.delete(f"/files/{ended['output_file_id']}").status_code == 200
    _on_loop(gateway, gateway.runtime.poller.start())

    events = wait_until(lambda: _billed(gateway, key["tenant_id"]), timeout=30, what="the estimate to be billed")
    assert [(e["model"], e["batch"], e["usage_source"]) for e in events] == [("gpt-4o", True, "estimated")]
    # Every line's prompt and the most output it allowed (max_tokens 50 each).
    assert events[0]["output_tokens"] == 3 * 50 and events[0]["input_tokens"] > 3 * 100
    assert settler.estimated_batches == 1
    time.sleep(1)  # settled: polled no more, billed once
    assert len(_billed(gateway, key["tenant_id"])) == 1
    assert client.batches.retrieve(batch.id).status == "completed"
