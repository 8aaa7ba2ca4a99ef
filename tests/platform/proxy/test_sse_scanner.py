"""The stream scanner: event boundaries in any chunking and line-ending style, usage found, nothing lost."""

from __future__ import annotations

import time

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tenantgate.core.exchange import Exchange
from tenantgate.core.principal import Limits, Principal
from tenantgate.platform.context import RequestContext
from tenantgate.platform.proxy.sse import StreamScanner
from tenantgate.platform.proxy.usage import record_json_answer

PRINCIPAL = Principal(
    key_id="key_1",
    key_prefix="tg-x",
    key_name="k",
    tenant_id="ten_1",
    tenant_name="t",
    tenant_active=True,
    expires_at=None,
    key_limits=Limits(),
    tenant_limits=Limits(),
    allowed_models=None,
)


def _exchange(operation: str = "chat") -> Exchange:
    return Exchange(
        ctx=RequestContext(request_id="req_1", principal=PRINCIPAL), operation=operation, path="/v1/chat/completions"
    )


def _chat_stream(separator: bytes) -> list[bytes]:
    chunks = [
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
            "usage": None,
        }
        for word in ("Hello", " wor", "ld")
    ]
    chunks.append(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": None,
        }
    )
    usage = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 3,
            "total_tokens": 12,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }
    events = [b"data: " + orjson.dumps(c) + separator for c in [*chunks, usage]]
    return [*events, b"data: [DONE]" + separator]


@given(
    cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=30),
    separator=st.sampled_from([b"\n\n", b"\r\n\r\n", b"\r\r"]),
)
def test_any_chunking_yields_the_same_events_and_usage(cuts: list[int], separator: bytes) -> None:
    stream = b"".join(_chat_stream(separator))
    exchange = _exchange()
    scanner = StreamScanner(exchange, strip_usage=False)
    out = []
    position = 0
    for cut in sorted(set(cuts)):
        if position < cut <= len(stream):
            out.append(scanner.feed(stream[position:cut]))
            position = cut
    out.append(scanner.feed(stream[position:]))
    out.append(scanner.flush())
    assert not b"".join(out).endswith(b"[DONE]" + separator)  # held back until the exchange is settled
    out.append(scanner.release())
    assert b"".join(out) == stream
    assert exchange.usage is not None
    assert (exchange.usage.input_tokens, exchange.usage.output_tokens, exchange.usage.cached_input_tokens) == (9, 3, 4)
    assert exchange.finish_reasons == ["stop"]
    assert exchange.response_id == "c1" and exchange.response_model == "m"


def test_stripping_removes_usage_chunk_and_null_fields_only() -> None:
    exchange = _exchange()
    scanner = StreamScanner(exchange, strip_usage=True)
    out = b"".join(scanner.feed(event) for event in _chat_stream(b"\n\n")) + scanner.release()
    assert b"usage" not in out
    assert out.count(b"data: ") == 5 and out.endswith(b"data: [DONE]\n\n")
    assert exchange.usage is not None and exchange.usage.total_tokens == 12


def test_delivered_text_estimates_from_what_was_sent() -> None:
    exchange = _exchange()
    scanner = StreamScanner(exchange, strip_usage=True)
    for event in _chat_stream(b"\n\n")[:2]:
        scanner.feed(event)
    assert scanner.delivered_text() == "Hello wor"


def test_responses_stream_usage_from_terminal_event() -> None:
    exchange = _exchange("responses")
    scanner = StreamScanner(exchange, strip_usage=False)
    created = {
        "type": "response.created",
        "sequence_number": 0,
        "response": {"id": "resp_1", "model": "gpt-4o-mini", "status": "in_progress"},
    }
    delta = {"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hi"}
    completed = {
        "type": "response.completed",
        "sequence_number": 2,
        "response": {
            "id": "resp_1",
            "object": "response",
            "model": "gpt-4o-mini",
            "status": "completed",
            "usage": {
                "input_tokens": 7,
                "output_tokens": 1,
                "total_tokens": 8,
                "output_tokens_details": {"reasoning_tokens": 5},
            },
        },
    }
    stream = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in (created, delta, completed)
    )
    assert scanner.feed(stream) + scanner.release() == stream
    assert exchange.response_id == "resp_1"
    assert exchange.usage is not None
    assert (exchange.usage.input_tokens, exchange.usage.output_tokens, exchange.usage.reasoning_tokens) == (7, 1, 5)
    assert exchange.finish_reasons == ["completed"]


def test_large_json_usage_found_near_the_end() -> None:
    exchange = _exchange("embeddings")
    data = [{"object": "embedding", "index": i, "embedding": [0.125] * 256} for i in range(200)]
    body = orjson.dumps(
        {"object": "list", "data": data, "model": "e", "usage": {"prompt_tokens": 321, "total_tokens": 321}}
    )
    assert len(body) > 256 * 1024
    record_json_answer(exchange, body)
    assert exchange.usage is not None and exchange.usage.input_tokens == 321


def _named(event: dict[str, object]) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


_ROLE = {"id": "c1", "object": "chat.completion.chunk", "model": "o3", "choices": [{"index": 0, "delta": {
    "role": "assistant", "content": "", "refusal": None}, "finish_reason": None}]}  # fmt: skip
_RESPONSES_BEFORE_TEXT = [
    {"type": "response.created", "response": {"id": "resp_1", "model": "o3", "status": "in_progress"}},
    {"type": "response.in_progress", "response": {"id": "resp_1", "model": "o3", "status": "in_progress"}},
    {"type": "response.output_item.added", "item": {"type": "reasoning", "id": "rs_1", "summary": []}},
    {"type": "response.reasoning_summary_text.delta", "delta": "Thinking about the content"},
    {"type": "response.output_item.done", "item": {"type": "reasoning", "id": "rs_1", "summary": []}},
    {"type": "response.output_item.added", "item": {"type": "message", "id": "msg_1", "content": []}},
    {"type": "response.content_part.added", "part": {"type": "output_text", "text": ""}},
]


@given(
    cuts=st.lists(st.integers(min_value=1, max_value=3000), max_size=20),
    api=st.sampled_from(["chat", "responses"]),
    first_visible=st.sampled_from(["text", "tool_call", "refusal"]),
)
def test_first_visible_token_is_noticed_when_it_arrives_in_any_chunking(
    cuts: list[int], api: str, first_visible: str
) -> None:
    if api == "chat":
        delta = {
            "text": {"content": "Hi"},
            "tool_call": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]},
            "refusal": {"refusal": "No"},
        }[first_visible]
        visible = {**_ROLE, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        before, after = b"data: " + orjson.dumps(_ROLE) + b"\n\n", b"data: " + orjson.dumps(visible) + b"\n\n"
    else:
        kind = {"text": "output_text", "tool_call": "function_call_arguments", "refusal": "refusal"}[first_visible]
        before = b"".join(_named(e) for e in _RESPONSES_BEFORE_TEXT)
        after = _named({"type": f"response.{kind}.delta", "delta": "Hi"})
    scanner = StreamScanner(_exchange(api), strip_usage=False)
    position = 0
    for cut in sorted(set(cuts)):
        if position < cut <= len(before):
            scanner.feed(before[position:cut])
            position = cut
    scanner.feed(before[position:])
    assert scanner.visible_at is None  # roles, reasoning items and summaries are not what the client waits for
    fed = time.perf_counter()
    scanner.feed(after[:7])
    scanner.feed(after[7:])
    assert scanner.visible_at is not None and scanner.visible_at >= fed
