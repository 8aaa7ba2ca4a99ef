"""Reasoning models through the official SDK: they think before their first visible token, report what they
thought in streamed usage, and a stored Responses stream cut short keeps the usage of what was generated."""

from __future__ import annotations

import time

import httpx
import openai
import orjson
from openai.types.responses import ResponseUsage

from tenantgate.devupstream.chat import REASONING_TOKENS
from tests.devupstream.conftest import KEY

MESSAGES = [{"role": "user", "content": "think before you answer"}]
DELAY_MS = 5
THINKING = REASONING_TOKENS * DELAY_MS / 1000  # a lower bound: sleeps never end early


def _slow(delay_ms: float = DELAY_MS) -> dict[str, str]:
    return {"x-dev-token-delay-ms": str(delay_ms)}


def test_chat_stream_thinks_before_the_first_visible_token_and_reports_it(client: openai.OpenAI) -> None:
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="o4-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=_slow(),
    )
    first_visible = None
    chunks = []
    for chunk in stream:
        if first_visible is None and chunk.choices and chunk.choices[0].delta.content:
            first_visible = time.monotonic()
        chunks.append(chunk)
    assert first_visible is not None and first_visible - started >= THINKING
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS
    visible = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert usage.completion_tokens == REASONING_TOKENS + visible


def test_responses_stream_thinks_inside_its_reasoning_item(client: openai.OpenAI) -> None:
    started = time.monotonic()
    times: dict[str, float] = {}
    events = []
    for event in client.responses.create(model="o4-mini", input="think first", stream=True, extra_headers=_slow()):
        times.setdefault(event.type, time.monotonic())
        events.append(event)
    assert times["response.output_text.delta"] - started >= THINKING
    reasoning_item = next(e for e in events if e.type == "response.output_item.added")
    assert reasoning_item.item.type == "reasoning"
    final = events[-1]
    assert final.type == "response.completed" and final.response.usage is not None
    assert final.response.usage.output_tokens_details.reasoning_tokens == REASONING_TOKENS


def _complete_usage(client: openai.OpenAI, text: str) -> ResponseUsage:
    response = client.responses.create(model="o4-mini", input=text)
    assert response.usage is not None
    return response.usage


def _cut_stream(upstream: str, text: str, headers: dict[str, str]) -> str:
    """Stream a stored response until the upstream cuts it; the response id from its first event."""
    received = b""
    with httpx.stream(
        "POST",
        upstream + "/v1/responses",
        headers={"Authorization": f"Bearer {KEY}", **headers},
        json={"model": "o4-mini", "input": text, "stream": True},
        timeout=10,
    ) as response:
        try:
            for chunk in response.iter_bytes():
                received += chunk
        except httpx.RemoteProtocolError:
            pass  # the connection dropped mid-answer
    first = received.split(b"\n\n")[0].split(b"data: ", 1)[1]
    return str(orjson.loads(first)["response"]["id"])


def test_truncated_stored_stream_keeps_the_usage_of_what_was_generated(upstream: str, client: openai.OpenAI) -> None:
    full = _complete_usage(client, "cut me short")
    # Events: created, in_progress, reasoning added and done, message added, content part added, then deltas. The
    # connection drops when the 9th event is due: three visible tokens were generated, two of them sent.
    response_id = _cut_stream(upstream, "cut me short", {"x-dev-truncate-after-events": "8"})
    stored = client.responses.retrieve(response_id)
    assert stored.status == "incomplete" and stored.usage is not None
    assert stored.usage.input_tokens == full.input_tokens
    assert stored.usage.output_tokens_details.reasoning_tokens == REASONING_TOKENS
    assert stored.usage.output_tokens == REASONING_TOKENS + 3
    assert stored.output_text == "This is the"


def test_stream_ended_by_an_error_is_stored_failed_with_its_usage(upstream: str, client: openai.OpenAI) -> None:
    # The error event takes the place of the 8th event, the second delta: two visible tokens were generated.
    response_id = _cut_stream(upstream, "fail me", {"x-dev-error-after-events": "7"})
    stored = client.responses.retrieve(response_id)
    assert stored.status == "failed" and stored.error is not None and stored.usage is not None
    assert stored.usage.output_tokens == REASONING_TOKENS + 2


def test_client_leaving_while_the_model_thinks_stops_it_and_keeps_what_it_thought(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="o4-mini", input="leave early", stream=True, extra_headers=_slow(20))
    created = next(iter(stream))
    assert created.type == "response.created"
    time.sleep(0.3)  # about 15 of the 64 reasoning tokens (20 ms each)
    stream.close()
    deadline = time.monotonic() + 5
    while (stored := client.responses.retrieve(created.response.id)).status == "in_progress":
        assert time.monotonic() < deadline, "the cut response stayed in progress"
        time.sleep(0.02)
    assert stored.status == "incomplete" and stored.usage is not None
    reasoning = stored.usage.output_tokens_details.reasoning_tokens
    assert 0 < reasoning < REASONING_TOKENS
    assert stored.usage.output_tokens == reasoning and stored.output_text == ""
