"""The aiohttp sessions: tenant-set base URLs (behind the SSRF guard's connector), and the operator's upstreams when
``TENANTGATE_UPSTREAM_HTTP_CLIENT=aiohttp``. Imported on first use (client.py), so a worker that serves neither
never loads aiohttp (errors.py says why). Importing it makes aiohttp's errors upstream failures for the proxy.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from tenantgate.platform.upstream import errors
from tenantgate.platform.upstream.guard import TenantUpstreamGuard
from tenantgate.platform.upstream.network import OutboundNetwork
from tenantgate.wire.httperrors import Timeouts
from tenantgate.wire.proxy import ProxyConfig, ProxyURL

errors.also_catch(aiohttp.ClientError)
_NO_TIMEOUT = aiohttp.ClientTimeout()  # every phase unlimited, as the lean client's ``timeout=None``


@lru_cache(maxsize=64)  # one per upstream and kind of answer
def _client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.sock_connect, sock_read=timeouts.sock_read)


@lru_cache(maxsize=256)
def _where(url: str) -> tuple[bool, str, int]:
    parts = urlsplit(url)
    is_ssl = parts.scheme == "https"
    return is_ssl, parts.hostname or "", parts.port or (443 if is_ssl else 80)


@lru_cache(maxsize=16)
def _aiohttp_proxy(proxy: ProxyURL) -> tuple[str, dict[str, str] | None]:
    """The proxy URL (without credentials) and the headers that carry them."""
    headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization is not None else None
    return str(proxy), headers


class AiohttpSession:
    """An aiohttp ``ClientSession`` behind the interface the proxy calls (client.py's ``UpstreamSession``).

    ``proxy``: the operator's outbound proxies, chosen per request as the lean client chooses them (wire/proxy.py),
    rather than aiohttp's ``trust_env``, which reads the environment on its own and also takes credentials from
    ``~/.netrc``."""

    def __init__(self, connector: aiohttp.TCPConnector, proxy: ProxyConfig | None = None) -> None:
        self._proxy = proxy
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
        proxy, proxy_headers = None, None
        if self._proxy is not None:
            is_ssl, host, port = _where(url)
            route = self._proxy.route(is_ssl, host, port)
            if route is not None:
                proxy, proxy_headers = _aiohttp_proxy(route)
                if proxy_headers is not None and not is_ssl:
                    # aiohttp sends proxy_headers with CONNECT only; an http:// request carries them itself.
                    headers, proxy_headers = [*headers, *proxy_headers.items()], None
        return await self._session.request(
            method,
            url,
            data=data,
            headers=headers,
            allow_redirects=allow_redirects,
            timeout=_client_timeout(timeout) if timeout is not None else _NO_TIMEOUT,
            proxy=proxy,
            proxy_headers=proxy_headers,
        )

    async def close(self) -> None:
        await self._session.close()


def operator_session(pool_size: int, network: OutboundNetwork | None = None) -> AiohttpSession:
    network = network or OutboundNetwork()
    connector = aiohttp.TCPConnector(limit=pool_size, ttl_dns_cache=300, keepalive_timeout=60, ssl=network.ssl_context)
    return AiohttpSession(connector, network.proxy)


def tenant_session(
    pool_size: int, guard: TenantUpstreamGuard, ssl_context: ssl.SSLContext | None = None
) -> AiohttpSession:
    """Connects only to addresses the guard permits: its socket factory checks the address actually connected to.
    Never through a proxy (network.py says why)."""
    return AiohttpSession(
        aiohttp.TCPConnector(
            limit=pool_size,
            ttl_dns_cache=300,
            keepalive_timeout=60,
            resolver=_GuardResolver(guard),
            socket_factory=guard.socket_factory,
            ssl=ssl_context if ssl_context is not None else True,
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
