"""The usage API's totals equal what the upstream reported, for a random mix of how requests end.

Requests go through the official SDK (and httpx for a client that hangs up) to a scripted upstream that keeps a
ledger of what it reported. Events with upstream usage must match it exactly. Events the gateway had to estimate
(the client hung up, the stream broke, the answer carried no usage) are flagged ``estimated``. Stated tolerance:
their input estimate is within ``3 + 25 %`` of the upstream's own count (tiktoken versus the dev upstream's word
count, plus the 3-token reply primer of OpenAI's counting recipe); a cut stream's output is between 1 token and
what the upstream had sent; a complete answer's output within a factor of 2 of the upstream's count.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tenantgate.devupstream import DevUpstream
from tenantgate.devupstream.wire import count_tokens
from tests.conftest import UPSTREAM_KEY
from tests.support.faulty_upstream import FaultyUpstream
from tests.support.gateway import Gateway
from tests.support.metering import admin_sdk, all_events, flush
from tests.support.server import ServedApp

SENTENCES = [
    "Please tell me about the weather in Paris today",
    "Summarise the quarterly report for the board",
    "What is the capital city of Australia",
    "Write a short poem about the sea and the wind",
    "Explain how a bicycle stays upright when moving",
]
KINDS = ("plain", "stream", "stream_usage", "embed", "disconnect", "fail500", "break", "nousage")


@pytest.fixture
def faulty() -> Iterator[tuple[FaultyUpstream, str]]:
    upstream = FaultyUpstream(DevUpstream(api_key=UPSTREAM_KEY))
    with ServedApp(upstream, lifespan="off") as served:
        yield upstream, served.url + "/v1"


def _send(gateway: Gateway, key: str, kind: str, name: str, text: str) -> str:
    """Make one request of the given kind; return the gateway's request id the client saw."""
    client = gateway.client(key)
    messages = [{"role": "user", "content": text}]
    if kind in ("plain", "nousage"):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, user=name)
        raw.parse()
        return raw.headers["x-request-id"]
    if kind in ("stream", "stream_usage", "break"):
        options: Any = {"include_usage": True} if kind == "stream_usage" else openai.omit
        raw_stream = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages, user=name, stream=True, stream_options=options
        )
        if kind == "break":
            with pytest.raises(openai.APIError):
                list(raw_stream.parse())
        else:
            list(raw_stream.parse())
        return raw_stream.headers["x-request-id"]
    if kind == "embed":
        raw_embed = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=text, user=name)
        raw_embed.parse()
        return raw_embed.headers["x-request-id"]
    if kind == "fail500":
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model="gpt-4o-mini", messages=messages, user=name)
        assert raised.value.request_id
        return raised.value.request_id
    assert kind == "disconnect"
    body = {"model": "gpt-4o-mini", "messages": messages, "user": name + "-slow", "stream": True}
    with httpx.stream(
        "POST", gateway.base_url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        request_id = response.headers["x-request-id"]
        for chunk in response.iter_raw():
            if b'"content":"This"' in chunk:
                break
    return request_id


def _wait_for(gateway: Gateway, tenant_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        flush(gateway)
        events = all_events(gateway, tenant_id=tenant_id)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def _true_prompt_tokens(text: str) -> int:
    return count_tokens(text) + 3  # the dev upstream's count for one message


def test_randomized_mix_totals_equal_upstream_reports(
    gateway_factory: Callable[..., Gateway], database_url: str, faulty: tuple[FaultyUpstream, str]
) -> None:
    upstream, upstream_url = faulty
    # Exact prompt estimates (tiktoken), so an estimated event's input is comparable with the upstream's count.
    gateway = gateway_factory(database_url=database_url, upstream_base_url=upstream_url, token_estimates="tiktoken")
    created = gateway.new_key()
    key, tenant_id = created["key"], created["tenant_id"]
    seed = int(os.environ.get("TG_TEST_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    started = int(time.time())
    kinds = list(KINDS) + [rng.choice(KINDS) for _ in range(21)]  # every kind at least once
    rng.shuffle(kinds)
    sent: dict[str, tuple[str, str, str]] = {}  # request id -> (kind, ledger name, prompt)
    for kind in kinds:
        name = f"{kind}-{uuid.uuid4().hex[:8]}"
        text = rng.choice(SENTENCES)
        sent[_send(gateway, key, kind, name, text)] = (kind, name, text)

    events = _wait_for(gateway, tenant_id, len(sent))
    by_request = {e["request_id"]: e for e in events}
    assert len(events) == len(sent) == len(by_request), f"seed {seed}: one event per request, exactly"
    for request_id, (kind, name, text) in sent.items():
        event = by_request[request_id]
        ledger = upstream.ledger[name + ("-slow" if kind == "disconnect" else "")]
        context = f"seed {seed}, {kind} request {request_id}"
        if kind == "fail500":
            assert (event["billable"], event["status"], event["input_tokens"]) == (False, 500, 0), context
            continue
        assert event["billable"] and event["status"] == 200, context
        if kind in ("disconnect", "break", "nousage"):
            assert event["usage_source"] == "estimated", context
            assert event["client_disconnected"] is (kind == "disconnect"), context
            truth = _true_prompt_tokens(text)
            assert abs(event["input_tokens"] - truth) <= 3 + truth // 4, context
            if kind == "nousage":
                assert ledger.withheld is not None, context
                true_output = ledger.withheld["completion_tokens"]
                assert true_output / 2 <= event["output_tokens"] <= true_output * 2, context
            else:
                assert 1 <= event["output_tokens"] <= ledger.content_events, context
            continue
        assert event["usage_source"] == "upstream", context
        assert ledger.reported is not None, context
        assert event["input_tokens"] == ledger.reported["prompt_tokens"], context
        assert event["output_tokens"] == ledger.reported.get("completion_tokens", 0), context

    admin = admin_sdk(gateway).admin.organization
    window: dict[str, Any] = {"start_time": started - 60, "end_time": int(time.time()) + 60, "project_ids": [tenant_id]}
    billable = [e for e in events if e["billable"]]
    for family, category in (("completions", "completions"), ("embeddings", "embeddings")):
        page = getattr(admin.usage, family)(**window)
        results = [r for bucket in page.data for r in bucket.results]
        expected = [e for e in billable if e["category"] == category]
        assert sum(r.num_model_requests for r in results) == len(expected), f"seed {seed}"
        assert sum(r.input_tokens for r in results) == sum(e["input_tokens"] for e in expected), f"seed {seed}"
        estimated = sum(r.model_extra["estimated_requests"] for r in results if r.model_extra)
        assert estimated == sum(e["usage_source"] == "estimated" for e in expected), f"seed {seed}"
        if family == "completions":
            assert sum(r.output_tokens for r in results) == sum(e["output_tokens"] for e in expected)
            upstream_reported = sum(
                upstream.ledger[sent[e["request_id"]][1]].reported["completion_tokens"]  # type: ignore[index]
                for e in expected
                if e["usage_source"] == "upstream"
            )
            estimated_output = sum(e["output_tokens"] for e in expected if e["usage_source"] == "estimated")
            assert sum(r.output_tokens for r in results) == upstream_reported + estimated_output

    costs = admin.usage.costs(**window)
    total_cost = sum(r.amount.value or 0 for bucket in costs.data for r in bucket.results if r.amount)
    event_cost = sum(float(e["cost_usd"]) for e in events)
    assert total_cost == pytest.approx(event_cost, rel=1e-9, abs=1e-12)
    assert event_cost > 0
