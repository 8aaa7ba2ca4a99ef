"""Forward one request to the upstream and relay the answer, streaming it as it arrives.

The forwarder records what happened on the Exchange and calls ``hooks.settle`` once usage is final and before the
client's response is complete (see hooks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
from starlette.types import Receive, Scope, Send

from tenantgate.platform.errors import UpstreamTimeout, UpstreamUnavailable, error_body
from tenantgate.platform.proxy.exchange import Attempt, Exchange
from tenantgate.platform.proxy.hooks import Hooks
from tenantgate.platform.proxy.http import client_response_headers, upstream_request_headers
from tenantgate.platform.proxy.sse import StreamScanner
from tenantgate.platform.proxy.usage import estimate_usage, record_json_answer
from tenantgate.platform.upstream.client import Upstream


async def forward(
    exchange: Exchange,
    upstream: Upstream,
    hooks: Hooks,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    method: str,
    path: str,
    body: bytes | None,
    strip_usage: bool = False,
) -> None:
    request_id = exchange.ctx.request_id
    headers = upstream_request_headers(scope, upstream.auth_header)
    headers.extend(exchange.upstream_headers)
    exchange.attempts += 1
    exchange.upstream_name = upstream.name
    attempt = Attempt(upstream=upstream.name, started=time.perf_counter())
    exchange.attempt_log.append(attempt)
    try:
        response = await upstream.session.request(
            method, upstream.url(path), data=body, headers=headers, allow_redirects=False
        )
    except TimeoutError:
        exchange.error_type = attempt.error_type = "timeout"
        attempt.ended = time.perf_counter()
        raise UpstreamTimeout(f"The upstream did not answer in time. (request id {request_id})") from None
    except aiohttp.ClientError as exc:
        exchange.error_type = attempt.error_type = type(exc).__name__
        attempt.ended = time.perf_counter()
        raise UpstreamUnavailable(f"The upstream could not be reached. (request id {request_id})") from None
    attempt.status = response.status
    try:
        await _relay(exchange, hooks, response, receive, send, strip_usage)
    finally:
        attempt.ended = time.perf_counter()
        if attempt.error_type is None and exchange.error_type is not None:
            attempt.error_type = exchange.error_type


async def _relay(
    exchange: Exchange,
    hooks: Hooks,
    response: aiohttp.ClientResponse,
    receive: Receive,
    send: Send,
    strip_usage: bool,
) -> None:
    request_id = exchange.ctx.request_id
    async with response:
        exchange.status = response.status
        response_headers = client_response_headers(response.raw_headers, request_id.encode())
        response_headers.extend(exchange.response_headers)
        if response.content_type == "text/event-stream":
            await _relay_stream(exchange, hooks, response, response_headers, receive, send, strip_usage)
            return
        try:
            payload = await response.read()
        except TimeoutError:
            exchange.error_type = "timeout"
            raise UpstreamTimeout(f"The upstream stopped answering. (request id {request_id})") from None
        except aiohttp.ClientError as exc:
            exchange.error_type = type(exc).__name__
            raise UpstreamUnavailable(
                f"The upstream connection failed while reading its answer. (request id {request_id})"
            ) from None
        exchange.first_byte_at = time.perf_counter()
        if response.status < 400:
            record_json_answer(exchange, payload)
        else:
            exchange.error_type = str(response.status)
        await hooks.settle(exchange)
        response_headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})


async def _relay_stream(
    exchange: Exchange,
    hooks: Hooks,
    response: aiohttp.ClientResponse,
    headers: list[tuple[bytes, bytes]],
    receive: Receive,
    send: Send,
    strip_usage: bool,
) -> None:
    """Relay an SSE stream event by event; stop reading upstream as soon as the client goes away."""
    scanner = StreamScanner(exchange, strip_usage=strip_usage)
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
    try:
        async for chunk in response.content.iter_any():
            if exchange.first_byte_at is None:
                exchange.first_byte_at = time.perf_counter()
            out = scanner.feed(chunk)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
        rest = scanner.flush()
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
    except (TimeoutError, aiohttp.ClientError) as exc:
        exchange.error_type = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        broken = True
    finally:
        watcher.cancel()
    if exchange.usage is None:
        estimate_usage(exchange, scanner.delivered_text())
    await hooks.settle(exchange)
    if exchange.client_disconnected:
        return
    held = scanner.release()
    if held:
        await send({"type": "http.response.body", "body": held, "more_body": True})
    if broken:
        # Bytes already went out, so the status cannot change: end with an SSE error event the SDKs raise.
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": _stream_error(exchange), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _stream_error(exchange: Exchange) -> bytes:
    body = error_body(
        f"The upstream stream broke off. (request id {exchange.ctx.request_id})", "api_error", "upstream_stream_error"
    )
    return b"event: error\ndata: " + body + b"\n\n"
