"""The aiohttp sessions: tenant-set base URLs (behind the SSRF guard's connector), and the operator's upstreams when
``TENANTGATE_UPSTREAM_HTTP_CLIENT=aiohttp``. Imported on first use (client.py), so a worker that serves neither
never loads aiohttp (errors.py says why). Importing it makes aiohttp's errors upstream failures for the proxy.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from functools import lru_cache

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from tenantgate.platform.upstream import errors
from tenantgate.platform.upstream.guard import TenantUpstreamGuard
from tenantgate.wire.httperrors import Timeouts

errors.also_catch(aiohttp.ClientError)
_NO_TIMEOUT = aiohttp.ClientTimeout()  # every phase unlimited, as the lean client's ``timeout=None``


@lru_cache(maxsize=64)  # one per upstream and kind of answer
def _client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.sock_connect, sock_read=timeouts.sock_read)


class AiohttpSession:
    """An aiohttp ``ClientSession`` behind the interface the proxy calls (client.py's ``UpstreamSession``)."""

    def __init__(self, connector: aiohttp.TCPConnector) -> None:
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            # A shared jar would hand one tenant's upstream cookies (e.g. a CDN's session cookie) to every other
            # tenant's requests; callers' own Cookie headers are forwarded as they are.
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            read_bufsize=2**16,
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: object = None,
        headers: Iterable[tuple[str, str]] = (),
        allow_redirects: bool = False,
        timeout: Timeouts | None = None,  # noqa: ASYNC109 (aiohttp's keyword: a per-phase policy)
    ) -> aiohttp.ClientResponse:
        return await self._session.request(
            method,
            url,
            data=data,
            headers=headers,
            allow_redirects=allow_redirects,
            timeout=_client_timeout(timeout) if timeout is not None else _NO_TIMEOUT,
        )

    async def close(self) -> None:
        await self._session.close()


def operator_session(pool_size: int) -> AiohttpSession:
    return AiohttpSession(aiohttp.TCPConnector(limit=pool_size, ttl_dns_cache=300, keepalive_timeout=60))


def tenant_session(pool_size: int, guard: TenantUpstreamGuard) -> AiohttpSession:
    """Connects only to addresses the guard permits: its socket factory checks the address actually connected to."""
    return AiohttpSession(
        aiohttp.TCPConnector(
            limit=pool_size,
            ttl_dns_cache=300,
            keepalive_timeout=60,
            resolver=_GuardResolver(guard),
            socket_factory=guard.socket_factory,
        )
    )


class _GuardResolver(AbstractResolver):
    """Resolves through the guard's current resolver, so one injected resolver serves both checks."""

    def __init__(self, guard: TenantUpstreamGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return await self._guard.resolver.resolve(host, port, family)

    async def close(self) -> None:
        await self._guard.resolver.close()
