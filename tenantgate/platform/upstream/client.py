"""The process-wide pooled HTTP clients to the upstreams.

aiohttp moves raw bytes with far less overhead per request than httpx or the openai SDK's typed calls
(see shared REFERENCE.md), and one pooled session keeps connections warm across requests and upstreams.
Timeouts are per request (see forward.py), since they differ by upstream and by streaming.

Base URLs set by tenants go through a second session whose connector checks every address it connects to
(guard.py). A separate pool rather than a filtering resolver on the shared one: aiohttp reuses pooled connections
by host and port, so on a shared pool a tenant URL naming an operator's internal host could ride a keep-alive
connection that no check ever saw, and IP literals never reach a resolver at all. Operator upstreams keep a
connector without any check, and a tenant's slow endpoint cannot use up their pool.
"""

from __future__ import annotations

import aiohttp

from tenantgate.platform.upstream.guard import TenantUpstreamGuard


def _session(connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        # A shared jar would hand one tenant's upstream cookies (e.g. a CDN's session cookie) to every other
        # tenant's requests; callers' own Cookie headers are forwarded as they are.
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        read_bufsize=2**16,
    )


class UpstreamClient:
    def __init__(self, pool_size: int, guard: TenantUpstreamGuard) -> None:
        self._pool_size = pool_size
        self._guard = guard
        self._session: aiohttp.ClientSession | None = None
        self._tenant_session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = _session(aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300, keepalive_timeout=60))
        self._tenant_session = _session(
            aiohttp.TCPConnector(
                limit=self._pool_size,
                ttl_dns_cache=300,
                keepalive_timeout=60,
                resolver=self._guard.connector_resolver(),
                socket_factory=self._guard.socket_factory,
            )
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        """For the operator's upstreams (trusted)."""
        assert self._session is not None, "upstream client used before startup"
        return self._session

    @property
    def tenant_session(self) -> aiohttp.ClientSession:
        """For tenant-set base URLs: connects only to addresses the SSRF guard permits."""
        assert self._tenant_session is not None, "upstream client used before startup"
        return self._tenant_session

    async def close(self) -> None:
        for session in (self._session, self._tenant_session):
            if session is not None:
                await session.close()
        self._session = self._tenant_session = None
