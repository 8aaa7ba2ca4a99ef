"""The dev upstream's ASGI app (raw ASGI: it must cost little CPU when it stands in for OpenAI in benchmarks)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import struct
import time
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o4-mini", "text-embedding-3-small")
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """A rough token count (words and punctuation); the dev upstream's own usage numbers use it."""
    return len(_TOKEN_RE.findall(text))


def _message_text(messages: object) -> str:
    parts: list[str] = []
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return " ".join(parts)


def _reply_tokens(prompt: str, max_tokens: int | None) -> list[str]:
    words = prompt.split()[:12]
    text = "This is the tenantgate dev upstream answering: " + " ".join(words)
    pieces = [m.group(0) for m in re.finditer(r"\s*\S+", text)]
    return pieces[:max_tokens] if max_tokens else pieces


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class DevUpstream:
    def __init__(self, token_delay_ms: float = 0.0, api_key: str | None = None) -> None:
        self.token_delay = token_delay_ms / 1000
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path, method = scope["path"], scope["method"]
        if self.api_key is not None and dict(scope["headers"]).get(b"authorization") != (
            b"Bearer " + self.api_key.encode()
        ):
            await _json(send, 401, _error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if method == "GET" and path.endswith("/models"):
            data = [{"id": m, "object": "model", "created": 1715367049, "owned_by": "system"} for m in MODELS]
            await _json(send, 200, {"object": "list", "data": data})
            return
        if method == "GET" and "/models/" in path:
            model = path.rsplit("/models/", 1)[1]
            if model not in MODELS:
                await _json(
                    send,
                    404,
                    _error(f"The model `{model}` does not exist.", "invalid_request_error", "model_not_found"),
                )
                return
            await _json(send, 200, {"id": model, "object": "model", "created": 1715367049, "owned_by": "system"})
            return
        if method != "POST":
            await _json(send, 404, _error(f"Unknown path {path}", "invalid_request_error", "unknown_url"))
            return
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            await _json(
                send, 400, _error("We could not parse the JSON body of your request.", "invalid_request_error", None)
            )
            return
        if path.endswith("/chat/completions"):
            await self._chat(payload, send)
        elif path.endswith("/embeddings"):
            await self._embeddings(payload, send)
        else:
            await _json(send, 404, _error(f"Unknown path {path}", "invalid_request_error", "unknown_url"))

    async def _chat(self, payload: dict[str, Any], send: Send) -> None:
        model = payload.get("model", "gpt-4o-mini")
        prompt = _message_text(payload.get("messages"))
        max_tokens = payload.get("max_completion_tokens") or payload.get("max_tokens")
        pieces = _reply_tokens(prompt, max_tokens if isinstance(max_tokens, int) else None)
        prompt_tokens = count_tokens(prompt) + 3 * max(1, len(payload.get("messages") or []))
        finish = "length" if max_tokens and len(pieces) >= max_tokens else "stop"
        completion_id = "chatcmpl-" + os.urandom(12).hex()
        created = int(time.time())
        fingerprint = "fp_" + hashlib.sha1(model.encode()).hexdigest()[:10]
        if not payload.get("stream"):
            if self.token_delay:
                await asyncio.sleep(self.token_delay * len(pieces))
            await _json(
                send,
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": "".join(pieces),
                                "refusal": None,
                                "annotations": [],
                            },
                            "logprobs": None,
                            "finish_reason": finish,
                        }
                    ],
                    "usage": _usage(prompt_tokens, len(pieces)),
                    "service_tier": "default",
                    "system_fingerprint": fingerprint,
                },
            )
            return
        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-request-id", b"req_" + os.urandom(16).hex().encode()),
                ],
            }
        )
        base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": fingerprint,
        }
        if include_usage:
            base["usage"] = None

        async def event(choices: list[dict[str, Any]], **extra: Any) -> None:
            data = orjson.dumps({**base, "choices": choices, **extra})
            await send({"type": "http.response.body", "body": b"data: " + data + b"\n\n", "more_body": True})

        await event(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )
        for piece in pieces:
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            await event([{"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}])
        await event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}])
        if include_usage:
            await event([], usage=_usage(prompt_tokens, len(pieces)))
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _embeddings(self, payload: dict[str, Any], send: Send) -> None:
        inputs = payload.get("input")
        texts = [inputs] if isinstance(inputs, str) else [str(i) for i in inputs or []]
        dims = int(payload.get("dimensions") or 8)
        data = []
        for index, text in enumerate(texts):
            digest = hashlib.sha256(text.encode()).digest()
            vector = [round((digest[i % 32] - 128) / 128, 6) for i in range(dims)]
            # The openai SDK asks for base64 (packed little-endian float32) unless told otherwise.
            embedding: object = vector
            if payload.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(count_tokens(t) for t in texts)
        await _json(
            send,
            200,
            {
                "object": "list",
                "data": data,
                "model": payload.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def _error(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


async def _json(send: Send, status: int, payload: object) -> None:
    body = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", b"req_" + os.urandom(16).hex().encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
