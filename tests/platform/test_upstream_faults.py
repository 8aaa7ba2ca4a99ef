"""Retries, failover, timeouts and byte fidelity, against a scripted upstream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.gateway import Gateway
from tests.support.scripted import Answer, ScriptedUpstream, chat_completion, json_answer, sse_answer

MESSAGES = [{"role": "user", "content": "hi"}]
SERVER_ERROR = {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def gateway(gateway_factory, sqlite_url: str, scripted: ScriptedUpstream) -> Gateway:
    return gateway_factory(
        database_url=sqlite_url,
        upstream_base_url=scripted.base_url,
        upstream_max_retries=2,
        upstream_first_byte_timeout_seconds=1.0,
    )


def _chunk(content: str) -> bytes:
    return b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,' + (
        b'"delta":{"content":"' + content.encode() + b'"},"finish_reason":null}]}\n\n'
    )


def test_500_then_200_is_retried(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    scripted.push(json_answer(500, SERVER_ERROR), json_answer(200, chat_completion("second try")))
    key = gateway.new_key()["key"]
    reply = gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "second try"
    assert len(scripted.requests) == 2


def test_429_retry_after_ms_is_honoured(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    scripted.push(json_answer(429, SERVER_ERROR, {"retry-after-ms": "300"}), json_answer(200, chat_completion()))
    key = gateway.new_key()["key"]
    started = time.monotonic()
    gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert time.monotonic() - started >= 0.3
    assert len(scripted.requests) == 2


def test_connection_reset_is_retried(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    scripted.push(Answer(reset=True), json_answer(200, chat_completion("after reset")))
    key = gateway.new_key()["key"]
    reply = gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "after reset"


def test_exhausted_retries_return_the_upstream_error(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    scripted.push(*(json_answer(503, SERVER_ERROR) for _ in range(3)))
    key = gateway.new_key()["key"]
    with pytest.raises(openai.InternalServerError) as raised:
        gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.status_code == 503
    assert len(scripted.requests) == 3  # the first try and max_retries=2
    assert raised.value.request_id and raised.value.request_id.startswith("req_")


def test_slow_first_byte_times_out_with_504(gateway_factory, sqlite_url: str, scripted: ScriptedUpstream) -> None:
    gateway = gateway_factory(
        database_url=sqlite_url,
        upstream_base_url=scripted.base_url,
        upstream_max_retries=0,
        upstream_first_byte_timeout_seconds=0.5,
    )
    scripted.push(sse_answer([_chunk("late")], first_delay=3.0))
    key = gateway.new_key()["key"]
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as raised:
        list(gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert raised.value.status_code == 504
    assert raised.value.code == "upstream_timeout"
    assert time.monotonic() - started < 2.5


def test_stream_silent_before_first_event_is_retried(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    scripted.push(
        sse_answer([_chunk("never")], delays=[3.0]),
        sse_answer([_chunk("Hello"), b"data: [DONE]\n\n"]),
    )
    key = gateway.new_key()["key"]
    chunks = list(gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello"
    assert len(scripted.requests) == 2
    # The silent attempt's connection was closed, not left taking a slot of the pool for good.
    assert _upstream_connections_in_use(gateway) == 0


def _upstream_connections_in_use(gateway: Gateway) -> int:
    async def count() -> int:
        pool = gateway.runtime.http.session
        return int(pool.open_connections - pool.idle_connections)

    return asyncio.run_coroutine_threadsafe(count(), gateway.loop).result(5)


def test_stream_broken_after_first_byte_is_not_retried(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    scripted.push(sse_answer([_chunk("Hel"), _chunk("lo")], complete=False))
    key = gateway.new_key()["key"]
    received = []
    with pytest.raises(openai.APIError, match="broke off"):
        for chunk in gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["Hel", "lo"]
    assert len(scripted.requests) == 1


def test_responses_arrive_byte_for_byte(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    odd = (
        b'{ "id" : "chatcmpl-odd",\n  "object":"chat.completion", "created":1, "model":"gpt-4o-mini",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"caf\\u00e9 \xe2\x98\x95"},'
        b'"finish_reason":"stop","x_vendor":{"nested":[1,2.50,true,null]}}],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7},   "unknown_top":"kept"   }'
    )
    scripted.push(json_answer(200, odd, {"x-custom-upstream": "yes", "x-ratelimit-remaining-requests": "9"}))
    key = gateway.new_key()["key"]
    request_body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x_unknown":{"a":[1]}}'
    response = httpx.post(
        gateway.base_url + "/chat/completions",
        content=request_body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.content == odd
    assert response.headers["x-custom-upstream"] == "yes"
    assert response.headers["x-upstream-ratelimit-remaining-requests"] == "9"
    assert (
        "x-ratelimit-remaining-requests" not in response.headers
        or response.headers["x-ratelimit-remaining-requests"] != "9"
    )
    assert scripted.requests[0].body == request_body
    assert scripted.requests[0].headers["authorization"] == "Bearer sk-upstream-test-key"


def test_stream_bytes_pass_through_and_usage_chunk_is_hidden(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    usage = (
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
    )
    first = _chunk("Hi").replace(b',"finish_reason":null}]}', b',"finish_reason":null}],"usage":null}')
    scripted.push(sse_answer([b": keep-alive comment\n\n", first, usage, b"data: [DONE]\n\n"]))
    key = gateway.new_key()["key"]
    with httpx.stream(
        "POST",
        gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
    ) as response:
        raw = b"".join(response.iter_bytes())
    assert raw == b": keep-alive comment\n\n" + _chunk("Hi") + b"data: [DONE]\n\n"
    forwarded = scripted.requests[0].body
    assert forwarded.startswith(b'{"stream_options":{"include_usage":true},')


def test_an_upstream_cookie_is_not_sent_on_other_tenants_requests(
    gateway_factory, sqlite_url: str, scripted: ScriptedUpstream
) -> None:
    """Upstreams set cookies (e.g. a CDN's session cookie); a shared jar would replay one caller's on everyone's.
    The upstream is named by host name: aiohttp's default jar ignores cookies of IP addresses."""
    gateway = gateway_factory(
        database_url=sqlite_url, upstream_base_url=scripted.base_url.replace("127.0.0.1", "localhost")
    )
    scripted.push(json_answer(200, chat_completion(), headers={"Set-Cookie": "__cf_bm=tenant-a-session; Path=/"}))
    scripted.push(json_answer(200, chat_completion()))
    first, second = gateway.new_key("alpha")["key"], gateway.new_key("beta")["key"]
    raw = gateway.client(first).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert "set-cookie" not in raw.headers  # not relayed either: the cookie is the platform account's
    gateway.client(second).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(scripted.requests) == 2
    assert "cookie" not in scripted.requests[1].headers
