"""Chat completions and legacy text completions, streamed (with the optional usage chunk) or not."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from tenantgate.devupstream.stored_chat import ChatStore, check_metadata
from tenantgate.devupstream.wire import (
    ApiError,
    Call,
    count_tokens,
    is_reasoning_model,
    new_id,
    optional_int,
    reply_pieces,
    require,
    require_model,
)

# What a reasoning model (o-series, gpt-5) "thinks" before answering, counted in completion_tokens like OpenAI does.
# Thinking takes time like any generated token (the token delay each), before the first visible token.
REASONING_TOKENS = 64
# The legacy completions endpoint stops after 16 tokens unless told otherwise.
LEGACY_DEFAULT_MAX_TOKENS = 16


def chat_usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0) -> dict[str, Any]:
    completion_tokens += reasoning_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def message_text(messages: object) -> str:
    parts: list[str] = []
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return " ".join(parts)


def _fingerprint(model: str) -> str:
    return "fp_" + hashlib.sha1(model.encode()).hexdigest()[:10]


def _include_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


async def chat_completions(call: Call, payload: dict[str, Any], store: ChatStore | None = None) -> None:
    """``store`` keeps the finished completion when the request says ``store: true`` (streamed ones too)."""
    model = require_model(payload)
    messages = require(payload, "messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "Invalid 'messages': expected a non-empty array.", code="invalid_value", param="messages")
    if store is not None and payload.get("store") is True:
        check_metadata(payload.get("metadata"))  # refused before a stream opens
    limit = optional_int(payload, "max_completion_tokens") or optional_int(payload, "max_tokens")
    prompt = message_text(messages)
    answer = reply_pieces(prompt, limit)
    prompt_tokens = count_tokens(prompt) + 3 * len(messages)
    reasoning = REASONING_TOKENS if is_reasoning_model(model) else 0
    finish = "length" if limit and len(answer) >= limit else "stop"
    base: dict[str, Any] = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
    }
    tail = {"service_tier": "default", "system_fingerprint": _fingerprint(model)}
    usage = chat_usage(prompt_tokens, len(answer), reasoning)
    if not payload.get("stream"):
        await call.pace(reasoning + len(answer))
        message: dict[str, Any] = {"role": "assistant", "content": "".join(answer), "refusal": None, "annotations": []}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        completion = {**base, "choices": [choice], "usage": usage, **tail}
        if store is not None and payload.get("store") is True:
            store.keep(payload, completion)
        await call.json(200, completion, prompt_tokens)
        return
    include_usage = _include_usage(payload)
    chunk = {**base, "object": "chat.completion.chunk", **tail}
    if include_usage:
        chunk["usage"] = None
    await call.open_stream(tokens=prompt_tokens)

    async def event(delta: dict[str, Any], finish_reason: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        await call.sse({**chunk, "choices": [choice]})

    await event({"role": "assistant", "content": "", "refusal": None})
    await call.pace(reasoning)
    for piece in answer:
        await call.pace()
        await event({"content": piece})
    await event({}, finish)
    if include_usage:
        await call.sse({**chunk, "choices": [], "usage": usage})
    if store is not None and payload.get("store") is True:
        message = {"role": "assistant", "content": "".join(answer), "refusal": None, "annotations": []}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        store.keep(payload, {**base, "choices": [choice], "usage": usage, **tail})
    await call.end(b"data: [DONE]\n\n")


def _legacy_prompts(payload: dict[str, Any]) -> list[tuple[str, int]]:
    """Each prompt as (text, token count); prompts may be text, token arrays, or lists of either."""
    prompt = require(payload, "prompt")
    items = prompt if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int) else [prompt]
    prompts: list[tuple[str, int]] = []
    for item in items:
        if isinstance(item, str):
            prompts.append((item, count_tokens(item)))
        elif isinstance(item, list) and all(isinstance(t, int) for t in item):
            prompts.append(("", len(item)))
        else:
            raise ApiError(400, "Invalid 'prompt': expected a string or an array of tokens.", param="prompt")
    return prompts


async def completions(call: Call, payload: dict[str, Any]) -> None:
    """The legacy /v1/completions endpoint (gpt-3.5-turbo-instruct, davinci-002, ...)."""
    model = require_model(payload)
    prompts = _legacy_prompts(payload)
    limit = optional_int(payload, "max_tokens") or LEGACY_DEFAULT_MAX_TOKENS
    echo = bool(payload.get("echo"))
    answers = [reply_pieces(text, limit) for text, _ in prompts]
    finishes = ["length" if len(answer) >= limit else "stop" for answer in answers]
    prompt_tokens = sum(tokens for _, tokens in prompts)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": sum(len(a) for a in answers),
        "total_tokens": prompt_tokens + sum(len(a) for a in answers),
    }
    base: dict[str, Any] = {
        "id": new_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    if not payload.get("stream"):
        await call.pace(max(len(a) for a in answers))
        choices = [
            {
                "text": (prompts[i][0] if echo else "") + "".join(answer),
                "index": i,
                "logprobs": None,
                "finish_reason": finishes[i],
            }
            for i, answer in enumerate(answers)
        ]
        await call.json(200, {**base, "choices": choices, "usage": usage}, prompt_tokens)
        return
    include_usage = _include_usage(payload)
    if include_usage:
        base["usage"] = None
    await call.open_stream(tokens=prompt_tokens)

    async def event(index: int, text: str, finish_reason: str | None = None) -> None:
        choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}
        await call.sse({**base, "choices": [choice]})

    for index, answer in enumerate(answers):
        if echo:
            await event(index, prompts[index][0])
        for piece in answer:
            await call.pace()
            await event(index, piece)
        await event(index, "", finishes[index])
    if include_usage:
        await call.sse({**base, "choices": [], "usage": usage})
    await call.end(b"data: [DONE]\n\n")
