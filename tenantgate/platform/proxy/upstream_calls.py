"""The gateway's own calls to an upstream, outside of forwarding a caller's request: reading a batch's input file
before creating it, and (in the background) polling batches and responses and reading their output files.

Same client pool, same templates and credentials as forwarding (``registry.Upstream.url``, ``auth_header``); a
tenant's own endpoint goes through the SSRF-guarded session. File contents are read line by line as they arrive,
bounded in line length and total size.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tenantgate.platform.errors import UpstreamUnavailable
from tenantgate.platform.upstream import errors
from tenantgate.platform.upstream.client import UpstreamClient, UpstreamResponse
from tenantgate.platform.upstream.paths import UpstreamPath
from tenantgate.platform.upstream.registry import Upstream


def _errors() -> tuple[type[Exception], ...]:
    return (*errors.CLIENT_ERRORS, TimeoutError)  # read when caught: aio.py may extend it after import


class TooLarge(Exception):
    """A file (or one of its lines) is longer than the caller of ``lines`` allows."""

    def __init__(self, line: int, total: bool) -> None:
        super().__init__(line)
        self.line = line
        self.total = total


async def call(
    http: UpstreamClient,
    upstream: Upstream,
    keys: dict[str, str] | None,
    method: str,
    path: UpstreamPath,
    *,
    stream: bool = False,
) -> UpstreamResponse:
    """Send one request; the caller reads and releases the response. UpstreamUnavailable if it cannot be sent."""
    if upstream.refused is not None:
        raise UpstreamUnavailable(f"The tenant's endpoint for upstream {upstream.name!r} is refused.")
    headers = [("Accept-Encoding", "identity")]
    auth = upstream.auth_header((keys or {}).get(upstream.name))
    if auth is not None:
        headers.append(auth)
    session = await http.tenant_session() if upstream.tenant_set else http.session
    try:
        return await session.request(
            method,
            upstream.url(path, None),
            headers=headers,
            allow_redirects=False,
            timeout=upstream.stream_timeout if stream else upstream.json_timeout,
        )
    except _errors() as exc:
        raise UpstreamUnavailable(f"The upstream could not be reached ({type(exc).__name__}).") from None


async def get_json(
    http: UpstreamClient, upstream: Upstream, keys: dict[str, str] | None, method: str, path: UpstreamPath
) -> tuple[int, dict[str, Any] | None]:
    """The status and JSON object of an answer (None when it is not one)."""
    response = await call(http, upstream, keys, method, path)
    try:
        body = await response.read()
    except _errors() as exc:
        raise UpstreamUnavailable(f"The upstream's answer broke off ({type(exc).__name__}).") from None
    finally:
        response.release()
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return response.status, None
    return response.status, answer if isinstance(answer, dict) else None


async def lines(response: UpstreamResponse, *, max_line: int, max_total: int) -> AsyncIterator[tuple[int, bytes]]:
    """The non-empty lines of a body as they arrive, with their numbers (from 1); TooLarge past either bound."""
    buffer = bytearray()
    total = 0
    number = 0
    try:
        while True:
            chunk = await response.content.readany()
            if not chunk:
                break
            total += len(chunk)
            if total > max_total:
                raise TooLarge(number + 1, total=True)
            buffer += chunk
            start = 0
            while (end := buffer.find(b"\n", start)) >= 0:
                number += 1
                line = bytes(buffer[start:end]).strip()
                start = end + 1
                if line:
                    yield number, line
            del buffer[:start]
            if len(buffer) > max_line:
                raise TooLarge(number + 1, total=False)
            await asyncio.sleep(0)  # a fast upstream and a long file must not hold the event loop
        if buffer.strip():
            yield number + 1, bytes(buffer).strip()
    except _errors() as exc:
        raise UpstreamUnavailable(f"Reading a file from the upstream broke off ({type(exc).__name__}).") from None
    finally:
        response.close()
