"""What every dev-upstream answer shares: OpenAI's headers, error shape, JSON bodies and SSE streams.

A `Call` is one request being answered. Its writers apply the request's stream faults (stall, truncate, garbage,
mid-stream error) so that the endpoint modules only describe *what* OpenAI would send.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from tenantgate.devupstream.faults import Faults, RateWindow

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_PIECE_RE = re.compile(r"\s*\S+")

# Sent by OpenAI on every answer; a gateway should not pass the account's organisation and project on to tenants.
_ACCOUNT_HEADERS = (
    (b"openai-version", b"2020-10-01"),
    (b"openai-organization", b"org-devupstream"),
    (b"openai-project", b"proj_devupstream"),
)
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"


def count_tokens(text: str) -> int:
    """A rough token count (words and punctuation); the dev upstream's own usage numbers use it."""
    return len(_TOKEN_RE.findall(text))


def pieces(text: str) -> list[str]:
    """``text`` cut into token-like pieces (each word with its leading space), as streams deliver them."""
    return _PIECE_RE.findall(text)


def reply_pieces(prompt: str, limit: int | None) -> list[str]:
    """The canned answer to ``prompt``: it names the dev upstream and repeats the first words of the prompt."""
    cut = pieces("This is the tenantgate dev upstream answering: " + " ".join(prompt.split()[:12]))
    return cut[:limit] if limit else cut


def new_id(prefix: str, size: int = 12) -> str:
    return prefix + os.urandom(size).hex()


def is_reasoning_model(model: str) -> bool:
    return model.startswith(("o1", "o3", "o4", "gpt-5"))


def error_body(message: str, type_: str, code: str | int | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class Abort(Exception):
    """Stops the endpoint. Raised before the answer is complete, the server closes the connection mid-response."""


@dataclass
class Call:
    """One request being answered, with the writers that apply its faults."""

    scope: Scope
    receive: Receive
    send: Send
    faults: Faults
    token_delay: float
    window: RateWindow
    server_name: bytes
    started: float = field(default_factory=time.perf_counter)
    events: int = 0
    responded: bool = False
    errored: bool = False
    """The answer ended with an in-stream error event (the ``x-dev-error-after-events`` fault)."""
    disconnected: bool = False
    _watcher: asyncio.Task[None] | None = None

    # -- pacing -----------------------------------------------------------------------------------------------
    async def pace(self, count: int = 1) -> None:
        """Wait as long as generating ``count`` tokens takes at the configured per-token delay.

        Raises Abort once the client is known to be gone (see ``watch_disconnect``): generation stops there."""
        if self.token_delay and count:
            await asyncio.sleep(self.token_delay * count)
        if self.disconnected:
            raise Abort

    def watch_disconnect(self) -> None:
        """Notice the client leaving mid-answer, so generation can stop and record what it produced.

        Only answers that keep something of their generation ask for it (stored Responses streams): it costs a task
        per request, and elsewhere a departed client's events are simply dropped by the server."""

        async def watch() -> None:
            while (await self.receive())["type"] != "http.disconnect":
                pass
            self.disconnected = True

        self._watcher = asyncio.create_task(watch())

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()

    # -- headers ----------------------------------------------------------------------------------------------
    def headers(self, content_type: bytes, tokens: int = 0) -> list[tuple[bytes, bytes]]:
        elapsed_ms = int((time.perf_counter() - self.started) * 1000)
        headers = [
            (b"content-type", content_type),
            (b"x-request-id", b"req_" + os.urandom(16).hex().encode()),
            (b"openai-processing-ms", b"%d" % elapsed_ms),
            *_ACCOUNT_HEADERS,
            (b"x-dev-upstream", self.server_name),
            *self.window.take(tokens),
        ]
        if self.faults.attempt:
            headers.append((b"x-dev-attempt", str(self.faults.attempt).encode()))
        return headers

    async def start(
        self, status: int, content_type: bytes, tokens: int = 0, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = self.headers(content_type, tokens)
        if extra:
            headers.extend(extra)
        self.responded = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    # -- whole bodies -----------------------------------------------------------------------------------------
    async def body(
        self,
        status: int,
        content_type: bytes,
        body: bytes,
        tokens: int = 0,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """A complete answer; it counts as one event for the stall/truncate faults."""
        if status < 400 and self.faults.garbage_at == 0:
            body = b'{"id": "garbage' if content_type.startswith(b"application/json") else b"\x00garbage"
        headers = [(b"content-length", str(len(body)).encode())]
        await self.start(status, content_type, tokens, [*headers, *(extra or [])])
        if self.faults.disrupts_body:
            await self._interrupt_if_due()
        await self.send({"type": "http.response.body", "body": body})

    async def json(self, status: int, payload: object, tokens: int = 0) -> None:
        await self.body(status, b"application/json", orjson.dumps(payload), tokens)

    async def error(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | int | None = None,
        param: str | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = orjson.dumps(error_body(message, type_, code, param))
        await self.body(status, b"application/json", body, extra=extra)

    # -- streams ----------------------------------------------------------------------------------------------
    async def open_stream(self, content_type: bytes = b"text/event-stream; charset=utf-8", tokens: int = 0) -> None:
        extra = [(b"cache-control", b"no-cache")] if content_type.startswith(b"text/event-stream") else None
        await self.start(200, content_type, tokens, extra)

    async def chunk(self, data: bytes) -> None:
        """One body chunk of a stream (an SSE event or a piece of audio)."""
        if self.faults.disrupts_body:
            await self._interrupt_if_due()
        self.events += 1
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def sse(
        self, payload: dict[str, Any], event: str | None = None, error: Callable[[], bytes] | None = None
    ) -> None:
        """One SSE event; the faults may replace it with garbage or an error event, or cut the stream here.

        ``error`` renders the stream's own error event; by default a data-only stream gets chat's ``{"error": ...}``
        and a named-event stream an ``error`` event.
        """
        data = (b"event: " + event.encode() + b"\ndata: " if event else b"data: ") + orjson.dumps(payload) + b"\n\n"
        faults = self.faults
        if not faults.disrupts_body:
            self.events += 1
            await self.send({"type": "http.response.body", "body": data, "more_body": True})
            return
        if faults.error_after is not None and self.events >= faults.error_after:
            self.errored = True
            await self.chunk(error() if error is not None else _default_error_event(event is not None))
            await self.end()
            raise Abort
        if faults.garbage_at is not None and self.events == faults.garbage_at:
            await self.chunk(b'data: {"garbage\n\n')
        await self.chunk(data)

    async def end(self, tail: bytes = b"") -> None:
        if self.faults.disrupts_body:
            await self._interrupt_if_due()
        await self.send({"type": "http.response.body", "body": tail, "more_body": False})

    async def _interrupt_if_due(self) -> None:
        faults = self.faults
        if faults.truncate_after is not None and self.events >= faults.truncate_after:
            raise Abort
        if faults.stall_after is not None and self.events >= faults.stall_after:
            # Hold the connection open and silent until the client gives up.
            while (await self.receive())["type"] != "http.disconnect":
                pass
            raise Abort


def _default_error_event(named: bool) -> bytes:
    error = error_body(SERVER_ERROR, "server_error", None)
    if named:
        return b"event: error\ndata: " + orjson.dumps({"type": "error", **error}) + b"\n\n"
    return b"data: " + orjson.dumps(error) + b"\n\n"


class ApiError(Exception):
    """A request OpenAI would refuse; the app renders it in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers: list[tuple[bytes, bytes]] | None = None


def require_model(payload: dict[str, Any], default: str | None = None) -> str:
    model = payload.get("model") or default
    if not isinstance(model, str) or not model:
        raise ApiError(400, "you must provide a model parameter")
    return model


def require(payload: dict[str, Any], name: str) -> Any:
    value = payload.get(name)
    if value is None:
        raise ApiError(400, f"Missing required parameter: '{name}'.", code="missing_required_parameter", param=name)
    return value


def optional_int(payload: dict[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, f"Invalid '{name}': expected an integer of at least 1.", code="invalid_value", param=name)
    return value
