"""Forward one request to the upstream and relay the answer, streaming it as it arrives."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from starlette.types import Receive, Scope, Send

from tenantgate.platform.context import RequestContext
from tenantgate.platform.errors import UpstreamTimeout, UpstreamUnavailable, error_body
from tenantgate.platform.proxy.http import client_response_headers, upstream_request_headers
from tenantgate.platform.upstream.client import Upstream


async def forward(
    ctx: RequestContext,
    upstream: Upstream,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    method: str,
    path: str,
    body: bytes | None,
) -> None:
    headers = upstream_request_headers(scope, upstream.auth_header)
    try:
        response = await upstream.session.request(
            method, upstream.url(path), data=body, headers=headers, allow_redirects=False
        )
    except TimeoutError:
        raise UpstreamTimeout(f"The upstream did not answer in time. (request id {ctx.request_id})") from None
    except aiohttp.ClientError:
        raise UpstreamUnavailable(f"The upstream could not be reached. (request id {ctx.request_id})") from None
    async with response:
        response_headers = client_response_headers(response.raw_headers, ctx.request_id.encode())
        if response.content_type == "text/event-stream":
            await _relay_stream(ctx, response, response_headers, receive, send)
            return
        try:
            payload = await response.read()
        except TimeoutError:
            raise UpstreamTimeout(f"The upstream stopped answering. (request id {ctx.request_id})") from None
        except aiohttp.ClientError:
            raise UpstreamUnavailable(
                f"The upstream connection failed while reading its answer. (request id {ctx.request_id})"
            ) from None
        response_headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})


async def _relay_stream(
    ctx: RequestContext,
    response: aiohttp.ClientResponse,
    headers: list[tuple[bytes, bytes]],
    receive: Receive,
    send: Send,
) -> None:
    """Relay an SSE stream chunk by chunk; stop reading upstream as soon as the client goes away."""
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
    try:
        async for chunk in response.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except asyncio.CancelledError:
        if not client_gone:
            raise
        # The client went away: closing the response drops the upstream connection, which cancels the
        # generation upstream instead of paying for tokens nobody reads.
        relay.uncancel()
        response.close()
        return
    except (TimeoutError, aiohttp.ClientError):
        # Bytes already went out, so the status cannot change: end with an SSE error event the SDKs raise.
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": _stream_error(ctx), "more_body": True})
    finally:
        watcher.cancel()
    await send({"type": "http.response.body", "body": b""})


def _stream_error(ctx: RequestContext) -> bytes:
    body = error_body(
        f"The upstream stream broke off. (request id {ctx.request_id})", "api_error", "upstream_stream_error"
    )
    return b"event: error\ndata: " + body + b"\n\n"
