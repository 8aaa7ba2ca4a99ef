"""The canned upstream's answers: one OpenAI chat completion and the same answer as an SSE stream.

Static bytes, so the upstream costs (almost) nothing per request and every contender is measured on the same
answer. The stream carries the usage chunk (the benchmark's streamed requests ask for it with
``stream_options.include_usage``), so a gateway that meters streamed requests finds what it needs.
"""

from __future__ import annotations

import json
from typing import Any

MODEL = "gpt-4o-mini"
COMPLETION_ID = "chatcmpl-bench0000000000000000000000"
CREATED = 1767225600
FINGERPRINT = "fp_bench00000"
# The streamed variant is chosen by this request header (the benchmark's load script sets it): nginx cannot look
# inside a JSON body, and every forwarder under test passes the header through unchanged.
STREAM_HEADER = "x-bench-stream"

PROMPT_TOKENS = 27
_REPLY = "Hello! The benchmark upstream answers every request with this same short canned reply of tokens."
REPLY_PIECES = [(" " if i else "") + word for i, word in enumerate(_REPLY.split(" "))]
COMPLETION_TOKENS = len(REPLY_PIECES)

REQUEST = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {"role": "user", "content": "Give me one sentence about multi-tenant API gateways."},
    ],
    "max_tokens": 64,
}
STREAM_REQUEST = {**REQUEST, "stream": True, "stream_options": {"include_usage": True}}


def _usage() -> dict[str, Any]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def completion_body() -> bytes:
    body = {
        "id": COMPLETION_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _REPLY, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    return _dumps(body).encode()


def stream_body() -> bytes:
    base = {
        "id": COMPLETION_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
        "usage": None,
    }

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        return "data: " + _dumps({**base, "choices": choices, **extra}) + "\n\n"

    events = [
        event([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None}, "finish_reason": None}])
    ]
    events += [
        event([{"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}])
        for piece in REPLY_PIECES
    ]
    events.append(event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
    events.append(event([], usage=_usage()))
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()
