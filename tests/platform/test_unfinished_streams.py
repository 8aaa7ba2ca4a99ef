"""Streams that end before their usage arrived are billed truthfully, reasoning included.

The official SDK is the client, the dev upstream the upstream: a reasoning model there thinks 64 tokens, one token
delay each, before its first visible token. A stored Responses stream cut short is billed what the upstream itself
reports for it; anything else is estimated, reasoning at the rate this gateway learned from complete streams.

Stated tolerance of an estimate: reasoning and output tokens within 25 % of what the upstream spent (output text is
counted by the default heuristic, 1 token per 4 characters, against the dev upstream's count of one per word).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tenantgate.devupstream.chat import REASONING_TOKENS
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush

# A reasoning estimate is the wait for the first visible token times a learned rate: the wait includes queueing,
# which on a busy machine (the suite runs in four processes on two cores) moves it by some tenths of a second.
TOLERANCE = 0.35
DELAY = 0.04  # seconds per token: the model thinks 2.56 s, so that noise stays a small part of it
SLOW = {"x-dev-token-delay-ms": str(DELAY * 1000)}
MESSAGES = [{"role": "user", "content": "think about the sea"}]


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str) -> Gateway:
    return gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream)


def _near(estimated: int, truth: int) -> bool:
    return abs(estimated - truth) <= TOLERANCE * truth


def _billed(gateway: Gateway, tenant_id: str, count: int) -> list[dict[str, Any]]:
    """The tenant's billable events once ``count`` of them are stored, oldest first."""
    deadline = time.monotonic() + 15
    while True:
        flush(gateway)
        events = [e for e in all_events(gateway, tenant_id=tenant_id) if e["billable"]]
        if len(events) >= count or time.monotonic() > deadline:
            return events


def _chat_usage(client: openai.OpenAI, model: str = "o4-mini") -> openai.types.CompletionUsage:
    """A complete stream (the gateway learns from it); its usage is what the upstream spends on this prompt."""
    stream = client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}, extra_headers=SLOW
    )
    usage = [chunk for chunk in stream][-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    return usage


def test_chat_stream_left_before_its_usage_is_estimated_with_its_reasoning(gateway: Gateway) -> None:
    created = gateway.new_key()
    client = gateway.client(created["key"])
    full = _chat_usage(client)
    visible = full.completion_tokens - REASONING_TOKENS
    # The upstream falls silent after the role chunk and every visible token: the client reads them all, then leaves
    # one event before the end (as in the issue), so the upstream spent exactly what the complete stream did.
    stream = client.chat.completions.create(
        model="o4-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={**SLOW, "x-dev-stall-after-events": str(1 + visible)},
    )
    seen = 0
    for chunk in stream:
        seen += bool(chunk.choices and chunk.choices[0].delta.content)
        if seen == visible:
            break
    stream.close()

    _, event = _billed(gateway, created["tenant_id"], 2)
    assert event["usage_source"] == "estimated" and event["client_disconnected"]
    assert _near(event["reasoning_tokens"], REASONING_TOKENS), event
    assert _near(event["output_tokens"], full.completion_tokens), event
    assert event["output_tokens"] > event["reasoning_tokens"]


def test_chat_stream_left_while_the_model_thinks_counts_the_thinking_so_far(gateway: Gateway) -> None:
    created = gateway.new_key()
    client = gateway.client(created["key"])
    _chat_usage(client)
    started = time.monotonic()
    stream = client.chat.completions.create(model="o4-mini", messages=MESSAGES, stream=True, extra_headers=SLOW)
    next(iter(stream))  # the role chunk; the model thinks from here on
    time.sleep(0.5)
    stream.close()
    thought = (time.monotonic() - started) / DELAY  # at most what the upstream spent until the gateway left it

    _, event = _billed(gateway, created["tenant_id"], 2)
    assert event["usage_source"] == "estimated" and event["client_disconnected"]
    assert 0 < event["reasoning_tokens"] < REASONING_TOKENS
    assert _near(event["reasoning_tokens"], round(thought)), (event, thought)
    assert event["output_tokens"] == event["reasoning_tokens"]  # nothing visible was delivered


def test_reasoning_is_counted_before_anything_was_learned_and_only_for_reasoning_models(gateway: Gateway) -> None:
    created = gateway.new_key()
    client = gateway.client(created["key"])
    # Left while it thinks; a model that does not think is left where its upstream falls silent, after 2 tokens.
    for model, stall in (("o3", "100"), ("gpt-4o-mini", "3")):
        stream = client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, extra_headers={**SLOW, "x-dev-stall-after-events": stall}
        )
        next(iter(stream))
        time.sleep(0.3)
        stream.close()

    thinker, plain = _billed(gateway, created["tenant_id"], 2)
    assert thinker["model"] == "o3" and thinker["usage_source"] == "estimated"
    assert 0 < thinker["reasoning_tokens"] <= thinker["output_tokens"]
    assert plain["model"] == "gpt-4o-mini" and plain["usage_source"] == "estimated"
    assert plain["reasoning_tokens"] == 0


def _stream_response(client: openai.OpenAI, stop_after_deltas: int, **options: Any) -> str:
    """A Responses stream the client leaves after that many text deltas; the response id."""
    stream = client.responses.create(model="o4-mini", input="think about the sea", stream=True, **options)
    response_id = ""
    deltas = 0
    for event in stream:
        if event.type == "response.created":
            response_id = event.response.id
        deltas += event.type == "response.output_text.delta"
        if deltas == stop_after_deltas:
            break
    stream.close()
    return response_id


def test_stored_responses_stream_left_midway_is_billed_what_the_upstream_reports(gateway: Gateway) -> None:
    created = gateway.new_key()
    client = gateway.client(created["key"])
    response_id = _stream_response(client, 3, extra_headers=SLOW)

    (event,) = _billed(gateway, created["tenant_id"], 1)
    stored = client.responses.retrieve(response_id)  # through the gateway: the tenant owns it
    assert stored.status == "incomplete" and stored.usage is not None
    assert event["usage_source"] == "upstream" and event["client_disconnected"]
    assert event["input_tokens"] == stored.usage.input_tokens
    assert event["output_tokens"] == stored.usage.output_tokens
    assert event["reasoning_tokens"] == stored.usage.output_tokens_details.reasoning_tokens == REASONING_TOKENS
    # The gateway's own retrieve is no event at all; the client's is one, not billable.
    flush(gateway)
    events = all_events(gateway, tenant_id=created["tenant_id"])
    assert [(e["endpoint"], e["billable"]) for e in events] == [
        ("/v1/responses", True),
        ("/v1/responses/{response_id}", False),
    ]


def test_stored_responses_stream_broken_upstream_is_billed_what_the_upstream_reports(gateway: Gateway) -> None:
    created = gateway.new_key()
    client = gateway.client(created["key"], max_retries=0)
    response_id = ""
    with pytest.raises(openai.APIError):
        # The connection drops when the 9th event is due (the third text delta).
        for event in client.responses.create(
            model="o4-mini", input="break off", stream=True, extra_headers={"x-dev-truncate-after-events": "8"}
        ):
            if event.type == "response.created":
                response_id = event.response.id

    (event,) = _billed(gateway, created["tenant_id"], 1)
    stored = client.responses.retrieve(response_id)
    assert stored.usage is not None and stored.usage.output_tokens == REASONING_TOKENS + 3
    assert event["usage_source"] == "upstream" and not event["client_disconnected"]
    assert event["error_type"] == "stream_broken"
    assert (event["input_tokens"], event["output_tokens"], event["reasoning_tokens"]) == (
        stored.usage.input_tokens,
        stored.usage.output_tokens,
        REASONING_TOKENS,
    )


def test_unstored_responses_stream_left_before_its_usage_is_estimated_with_its_reasoning(gateway: Gateway) -> None:
    created = gateway.new_key()
    client = gateway.client(created["key"])
    complete = list(
        client.responses.create(
            model="o4-mini", input="think about the sea", stream=True, store=False, extra_headers=SLOW
        )
    )
    full = complete[-1].response.usage
    assert full is not None
    visible = full.output_tokens - REASONING_TOKENS
    # Silent after every visible token (6 events come before the first delta): nothing of it is stored upstream.
    _stream_response(client, visible, store=False, extra_headers={**SLOW, "x-dev-stall-after-events": str(6 + visible)})

    _, event = _billed(gateway, created["tenant_id"], 2)
    assert event["usage_source"] == "estimated" and event["client_disconnected"]
    assert _near(event["reasoning_tokens"], REASONING_TOKENS), event
    assert _near(event["output_tokens"], full.output_tokens), event
