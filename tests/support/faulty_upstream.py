"""A scripted upstream for metering tests: the dev upstream, plus faults on request, plus a ledger of the truth.

The request's ``user`` field names it (the dev upstream ignores that field and token estimates never count it)
and may carry instructions: ``fail500`` answers 500, ``break`` cuts a stream after a few events (the connection
drops without the usage chunk), ``slow`` waits 50 ms before each stream event (so a client can hang up mid-way),
``nousage`` leaves the usage object out of a non-streamed answer (as some compatible servers do).
The ledger records, per name, the usage the upstream reported and the content tokens it actually sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from tenantgate.devupstream import DevUpstream


class _Cut(Exception):
    pass


@dataclass
class Sent:
    reported: dict[str, Any] | None = None
    """The usage object the upstream sent, if it got that far."""
    content_events: int = 0
    """Stream events with generated content that went out (one token each, in the dev upstream)."""
    status: int = 0
    withheld: dict[str, Any] | None = None
    """The usage a ``nousage`` answer would have reported."""


@dataclass
class FaultyUpstream:
    inner: DevUpstream = field(default_factory=DevUpstream)
    ledger: dict[str, Sent] = field(default_factory=dict)
    break_after_events: int = 4

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        payload = _json(body)
        name = str(payload.get("user") or "")
        sent = self.ledger.setdefault(name, Sent()) if name else Sent()
        if "fail500" in name:
            sent.status = 500
            error = {"error": {"message": "upstream exploded", "type": "server_error", "param": None, "code": None}}
            data = orjson.dumps(error)
            await send(
                {"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": data})
            return
        events = 0
        held_start: Message | None = None

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def watch(message: Message) -> None:
            nonlocal events
            nonlocal held_start
            if message["type"] == "http.response.start":
                sent.status = message["status"]
                if "nousage" in name:
                    held_start = message  # its content-length changes once the usage is cut out
                    return
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk.startswith(b"data: {"):
                    events += 1
                    if "break" in name and events > self.break_after_events:
                        raise _Cut
                    if "slow" in name:
                        await asyncio.sleep(0.05)
                    _note_event(sent, chunk)
                elif chunk.startswith(b"{"):
                    answer = _json(chunk)
                    if held_start is not None:
                        sent.withheld = answer.pop("usage", None)
                        message = {**message, "body": orjson.dumps(answer)}
                        length = str(len(message["body"])).encode()
                        headers = [(k, length if k == b"content-length" else v) for k, v in held_start["headers"]]
                        await send({**held_start, "headers": headers})
                    elif isinstance(answer.get("usage"), dict):
                        sent.reported = answer["usage"]
            await send(message)

        try:
            await self.inner(scope, replay, watch)
        except _Cut:
            raise RuntimeError("scripted stream break") from None  # uvicorn drops the connection mid-response


def _note_event(sent: Sent, chunk: bytes) -> None:
    event = _json(chunk[len(b"data: ") :].strip())
    if isinstance(event.get("usage"), dict):
        sent.reported = event["usage"]
    for choice in event.get("choices") or ():
        if (choice.get("delta") or {}).get("content"):
            sent.content_events += 1


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
