"""Forward one request to the upstream deployments of its model: retries and failover until bytes are committed.

Nothing reaches the client until an attempt succeeds (for streams: until its first event arrived), so every
failure before that point can be retried on the same upstream (``retry.py`` decides when and how long) and then
on the next deployment. Once bytes went out, the exchange is never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from tenantgate.core.exchange import Attempt, Exchange
from tenantgate.platform.errors import GatewayError, UpstreamAddressForbidden, UpstreamTimeout, UpstreamUnavailable
from tenantgate.platform.proxy.hooks import Hooks
from tenantgate.platform.proxy.http import client_response_headers, upstream_request_headers
from tenantgate.platform.proxy.relay import is_buffered, relay_buffered, relay_chunks
from tenantgate.platform.proxy.sse import StreamScanner
from tenantgate.platform.proxy.unfinished import UnfinishedStreams, UpstreamAccess
from tenantgate.platform.upstream import errors
from tenantgate.platform.upstream.client import UpstreamClient, UpstreamResponse, UpstreamSession
from tenantgate.platform.upstream.guard import AddressRefused
from tenantgate.platform.upstream.paths import UpstreamPath
from tenantgate.platform.upstream.registry import Target
from tenantgate.platform.upstream.retry import backoff, retry_after, should_retry_status

_NO_TIMEOUT = contextlib.nullcontext()

BodyFactory = Callable[[Target], object]
"""The request body for a deployment (bytes, or an async iterable for a streamed upload), or None."""


@dataclass(slots=True)
class _Failed:
    """An attempt that sent nothing to the client: an upstream error answer, or a transport error."""

    error: GatewayError | None = None
    status: int = 0
    headers: list[tuple[bytes, bytes]] | None = None
    body: bytes = b""
    wait: float | None = None
    final: bool = False  # retrying the same upstream cannot help (a refused address); fail over at once


@dataclass(frozen=True, slots=True)
class ForwardPolicy:
    max_retry_wait: float
    replayable: bool = True
    strip_usage: bool = False
    unfinished: UnfinishedStreams | None = None
    """Settles streams that end without their usage; without it they are estimated from delivered text only."""
    stream_body: bool = False
    """Relay a successful answer chunk by chunk whatever its type (file contents), never holding it whole."""
    park: Callable[[Exchange], None] | None = None
    """Called as each attempt is sent: from then on the request waits for its upstream, which is not the worker's
    work (a work slot held that long passes on, platform/workslots.py)."""


def tenant_keys(exchange: Exchange) -> dict[str, str] | None:
    """The caller's tenant's own upstream keys (BYOK) by upstream name, or None."""
    keys = exchange.ctx.principal.upstream_keys
    return {name: secret.get_secret_value() for name, secret in keys.items()} if keys else None


async def forward(
    exchange: Exchange,
    client: UpstreamClient,
    hooks: Hooks,
    targets: tuple[Target, ...],
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    method: str,
    path: UpstreamPath,
    body_for: BodyFactory,
    policy: ForwardPolicy,
    tenant_keys: Mapping[str, str] | None = None,
) -> None:
    base_headers = upstream_request_headers(scope, None, exchange.ctx.principal.tenant_id)
    if exchange.upstream_headers:
        # A hook's header replaces the caller's of the same name (e.g. our traceparent the caller's).
        replaced = {name.lower() for name, _ in exchange.upstream_headers}
        base_headers = [header for header in base_headers if header[0].lower() not in replaced]
        base_headers.extend(exchange.upstream_headers)
    failure: _Failed | None = None
    for target in targets:
        for retry in range(target.upstream.max_retries + 1):
            if exchange.attempts and not policy.replayable:
                break
            headers = list(base_headers)
            auth = target.upstream.auth_header((tenant_keys or {}).get(target.upstream.name))
            if auth is not None:
                headers.append(auth)
            failure = await _attempt(
                exchange,
                client,
                hooks,
                target,
                headers,
                receive,
                send,
                method=method,
                path=path,
                body=body_for(target),
                policy=policy,
                auth=auth,
            )
            if failure is None:
                return
            if failure.final or retry == target.upstream.max_retries:
                break
            wait = failure.wait if failure.wait is not None else backoff(retry)
            if wait > policy.max_retry_wait:
                break  # not worth sitting out: fail over to the next deployment now
            await asyncio.sleep(wait)
    await _give_up(exchange, hooks, failure, send)


async def _attempt(
    exchange: Exchange,
    client: UpstreamClient,
    hooks: Hooks,
    target: Target,
    headers: list[tuple[str, str]],
    receive: Receive,
    send: Send,
    *,
    method: str,
    path: UpstreamPath,
    body: object,
    policy: ForwardPolicy,
    auth: tuple[str, str] | None,
) -> _Failed | None:
    upstream = target.upstream
    request_id = exchange.ctx.request_id
    attempt = Attempt(upstream=upstream.name, started=time.perf_counter())
    exchange.attempt_log.append(attempt)
    exchange.attempts += 1
    exchange.upstream_name = upstream.name
    exchange.upstream_model = target.model
    first_chunk = b""
    response: UpstreamResponse | None = None
    session: UpstreamSession = client.session
    if upstream.tenant_set:
        if upstream.refused is not None:
            return _refused(exchange, attempt, upstream.name)
        session = await client.tenant_session()
    try:
        # Non-streamed answers are bounded by the client's own total timeout (json_timeout).
        async with asyncio.timeout(upstream.first_byte_timeout) if exchange.stream else _NO_TIMEOUT:
            if policy.park is not None:
                policy.park(exchange)
            response = await session.request(
                method,
                upstream.url(path, target.model),
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=upstream.stream_timeout if exchange.stream else upstream.json_timeout,
            )
            attempt.status = response.status
            if should_retry_status(response.status):
                error_body = await response.read()
                response.release()
                attempt.ended = time.perf_counter()
                attempt.error_type = str(response.status)
                return _Failed(
                    status=response.status,
                    body=error_body,
                    wait=retry_after(response.headers),
                    headers=client_response_headers(response.raw_headers, request_id.encode()),
                )
            if response.content_type == "text/event-stream":
                # Hold the response head until the first event: a stream that dies before it can still be retried.
                first_chunk = await response.content.readany()
    except TimeoutError:
        if response is not None:
            response.close()  # e.g. a stream silent before its first event: drop the connection, free its slot
        attempt.ended = time.perf_counter()
        attempt.error_type = exchange.error_type = "timeout"
        return _Failed(
            error=UpstreamTimeout(
                f"The upstream did not answer within {upstream.first_byte_timeout:g}s. (request id {request_id})"
            )
        )
    except asyncio.CancelledError:
        if response is not None:
            response.close()
        raise
    except errors.CLIENT_ERRORS as exc:
        if response is not None:
            response.close()
        if isinstance(getattr(exc, "os_error", None), AddressRefused):  # aiohttp's ClientConnectorError
            return _refused(exchange, attempt, upstream.name)
        attempt.ended = time.perf_counter()
        attempt.error_type = exchange.error_type = type(exc).__name__
        return _Failed(error=UpstreamUnavailable(f"The upstream could not be reached. (request id {request_id})"))
    exchange.error_type = None
    access = UpstreamAccess(session, upstream, auth)
    try:
        await _relay(exchange, hooks, response, first_chunk, receive, send, policy, access)
    finally:
        attempt.ended = time.perf_counter()
        attempt.error_type = attempt.error_type or exchange.error_type
        response.release()
    return None


def _refused(exchange: Exchange, attempt: Attempt, upstream: str) -> _Failed:
    attempt.ended = time.perf_counter()
    attempt.error_type = exchange.error_type = UpstreamAddressForbidden.code
    message = (
        f"The base URL set for this tenant's upstream {upstream!r} points to an address the gateway may not connect "
        f"to. (request id {exchange.ctx.request_id})"
    )
    return _Failed(error=UpstreamAddressForbidden(message), final=True)


async def _relay(
    exchange: Exchange,
    hooks: Hooks,
    response: UpstreamResponse,
    first_chunk: bytes,
    receive: Receive,
    send: Send,
    policy: ForwardPolicy,
    access: UpstreamAccess,
) -> None:
    exchange.status = response.status
    headers = client_response_headers(response.raw_headers, exchange.ctx.request_id.encode())
    headers.extend(exchange.response_headers)
    content_type = response.content_type
    if content_type == "text/event-stream":
        exchange.first_byte_at = time.perf_counter()
        scanner = StreamScanner(exchange, strip_usage=policy.strip_usage)
        await relay_chunks(
            exchange,
            hooks,
            response,
            headers,
            first_chunk,
            receive,
            send,
            scanner=scanner,
            unfinished=policy.unfinished,
            access=access,
        )
    elif response.status >= 400 or (is_buffered(content_type) and not policy.stream_body):
        await relay_buffered(exchange, hooks, response, headers, send)
    else:
        first = await response.content.readany()
        exchange.first_byte_at = time.perf_counter()
        await relay_chunks(exchange, hooks, response, headers, first, receive, send, scanner=None)


async def _give_up(exchange: Exchange, hooks: Hooks, failure: _Failed | None, send: Send) -> None:
    """Every deployment failed before any byte went out: the last upstream error answer, or a 502/504."""
    if failure is None or failure.error is not None:
        raise (
            failure.error
            if failure is not None and failure.error is not None
            else UpstreamUnavailable(f"No upstream could serve this request. (request id {exchange.ctx.request_id})")
        )
    exchange.status = failure.status
    exchange.error_type = str(failure.status)
    await hooks.settle(exchange)
    headers = failure.headers or []
    headers.extend(exchange.response_headers)
    headers.append((b"content-length", str(len(failure.body)).encode()))
    await send({"type": "http.response.start", "status": failure.status, "headers": headers})
    await send({"type": "http.response.body", "body": failure.body})
