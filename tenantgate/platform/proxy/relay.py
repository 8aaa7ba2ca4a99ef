"""Relaying an upstream answer the gateway has committed to, by kind of body.

SSE streams go event by event through the usage scanner; binary bodies (audio) are passed through chunk by chunk;
JSON bodies are read whole so usage can be taken from them before the client gets the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from starlette.types import Receive, Send

from tenantgate.core.exchange import Exchange
from tenantgate.platform.errors import UpstreamTimeout, UpstreamUnavailable, error_body
from tenantgate.platform.proxy.hooks import Hooks
from tenantgate.platform.proxy.sse import StreamScanner
from tenantgate.platform.proxy.unfinished import UnfinishedStreams, UpstreamAccess
from tenantgate.platform.proxy.usage import (
    estimate_usage,
    record_json_answer,
    record_speech_audio,
    record_stored_answer,
)
from tenantgate.platform.upstream import errors
from tenantgate.platform.upstream.client import UpstreamResponse

_BUFFERED_TYPES = ("application/json", "text/plain", "text/html")
_SPEECH_PATH = "/v1/audio/speech"
_HEAD_BYTES = 256


def is_buffered(content_type: str) -> bool:
    return content_type.startswith(_BUFFERED_TYPES) or not content_type


async def relay_buffered(
    exchange: Exchange,
    hooks: Hooks,
    response: UpstreamResponse,
    headers: list[tuple[bytes, bytes]],
    send: Send,
) -> None:
    try:
        payload = await response.read()
    except TimeoutError:
        exchange.error_type = "timeout"
        raise UpstreamTimeout(f"The upstream stopped answering. (request id {exchange.ctx.request_id})") from None
    except errors.CLIENT_ERRORS as exc:
        exchange.error_type = type(exc).__name__
        raise UpstreamUnavailable(
            f"The upstream connection failed while reading its answer. (request id {exchange.ctx.request_id})"
        ) from None
    exchange.first_byte_at = time.perf_counter()
    if response.status < 400 and exchange.keep_answer:
        exchange.answer = _json_object(payload)
    if response.status < 400 and exchange.model_work:
        record_json_answer(exchange, payload)
    elif response.status < 400:
        record_stored_answer(exchange, payload)
    else:
        exchange.error_type = exchange.error_type or str(response.status)
    await hooks.settle(exchange)
    if exchange.withheld is not None:
        raise exchange.withheld
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def relay_chunks(
    exchange: Exchange,
    hooks: Hooks,
    response: UpstreamResponse,
    headers: list[tuple[bytes, bytes]],
    first_chunk: bytes,
    receive: Receive,
    send: Send,
    *,
    scanner: StreamScanner | None,
    unfinished: UnfinishedStreams | None = None,
    access: UpstreamAccess | None = None,
) -> None:
    """Relay as it arrives (SSE through ``scanner``, binary as is); stop reading upstream if the client leaves.

    A stream that ended without its usage is settled by ``unfinished`` (asking ``access``'s upstream, else
    estimating); one that reported it teaches ``unfinished`` how long its model reasons."""
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    relay = asyncio.current_task()
    assert relay is not None
    client_gone = False

    async def watch_disconnect() -> None:
        nonlocal client_gone
        while (await receive())["type"] != "http.disconnect":
            pass
        client_gone = True
        relay.cancel()

    watcher = asyncio.create_task(watch_disconnect())
    broken = False
    head, size = b"", 0  # of a binary body: its first bytes (a WAV header) and its length, for speech's usage
    try:
        chunk = first_chunk
        while chunk:
            out = scanner.feed(chunk) if scanner is not None else chunk
            if scanner is None:
                head, size = head if len(head) >= _HEAD_BYTES else (head + chunk)[:_HEAD_BYTES], size + len(chunk)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            chunk = await response.content.readany()
        rest = scanner.flush() if scanner is not None else b""
        if rest:
            await send({"type": "http.response.body", "body": rest, "more_body": True})
    except asyncio.CancelledError:
        if not client_gone:
            raise
        # The client went away: closing the response drops the upstream connection, which stops the generation
        # upstream instead of paying for tokens nobody reads.
        relay.uncancel()
        response.close()
        exchange.client_disconnected = True
    except TimeoutError:
        exchange.error_type = "stream_timeout"
        broken = True
    except errors.CLIENT_ERRORS:
        exchange.error_type = "stream_broken"
        broken = True
    finally:
        watcher.cancel()
    if scanner is not None and exchange.model_work:
        if exchange.usage is None and unfinished is not None:
            await unfinished.settle(exchange, scanner, access, cut_at=time.perf_counter())
        elif exchange.usage is None:
            estimate_usage(exchange, scanner.delivered_text())
        elif unfinished is not None:
            unfinished.learn(exchange, scanner)
    if scanner is None and exchange.model_work and exchange.path == _SPEECH_PATH and response.status < 400:
        record_speech_audio(exchange, head, size)
    if scanner is not None and exchange.capture_output and exchange.output is None:
        exchange.output = scanner.delivered_text()
    await hooks.settle(exchange)
    if exchange.client_disconnected:
        return
    if exchange.withheld is not None:
        # The stream's end never goes out: the SDKs raise on the error event instead.
        with contextlib.suppress(OSError):
            body = b"event: error\ndata: " + exchange.withheld.body() + b"\n\n"
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    held = scanner.release() if scanner is not None else b""
    if held:
        # The stream's end marker, held back by the scanner until the exchange was settled (metered).
        await send({"type": "http.response.body", "body": held, "more_body": True})
    if broken:
        if scanner is None:
            # A binary body cut short must not look complete: leave the response unfinished, so the server
            # closes the connection and the client sees a truncated transfer.
            return
        # Bytes already went out, so the status cannot change: end with an SSE error event the SDKs raise.
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": _stream_error(exchange), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        answer = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return answer if isinstance(answer, dict) else None


def _stream_error(exchange: Exchange) -> bytes:
    message = f"The upstream stream broke off. (request id {exchange.ctx.request_id})"
    body = error_body(message, "api_error", "upstream_stream_error")
    return b"event: error\ndata: " + body + b"\n\n"
