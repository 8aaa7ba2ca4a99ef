"""The process-wide pooled HTTP clients to the upstreams.

The operator's upstreams are called through the gateway's own HTTP/1.1 client (wire/http1.py): it only moves bytes,
at a fraction of aiohttp's CPU per request. ``TENANTGATE_UPSTREAM_HTTP_CLIENT=aiohttp`` switches back to aiohttp
(an escape hatch for an upstream or network path the lean client does not get along with). Both reach the
upstreams the same way: the same trust and outbound proxies (network.py). One pool keeps connections warm across
requests and upstreams. Timeouts are per request (see forward.py), since they differ by upstream and by streaming.

Base URLs set by tenants go through an aiohttp session whose connector checks every address it connects to
(guard.py, aio.py), made on first use: aiohttp is imported only by a worker that needs it (errors.py). A separate
pool rather than a filtering resolver on the shared one: aiohttp reuses pooled connections by host and port, so on
a shared pool a tenant URL naming an operator's internal host could ride a keep-alive connection that no check ever
saw, and IP literals never reach a resolver at all. Operator upstreams keep a connector without any check, and a
tenant's slow endpoint cannot use up their pool.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal, Protocol

from tenantgate.platform.upstream.guard import TenantUpstreamGuard
from tenantgate.platform.upstream.network import OutboundNetwork
from tenantgate.wire.http1 import Http1Client
from tenantgate.wire.httperrors import Timeouts

if TYPE_CHECKING:
    from tenantgate.platform.upstream.aio import AiohttpSession


class BodyReader(Protocol):
    async def readany(self) -> bytes: ...


class UpstreamResponse(Protocol):
    """What the proxy reads of an upstream's answer: aiohttp's ClientResponse, or wire/http1.py's."""

    @property
    def status(self) -> int: ...
    @property
    def raw_headers(self) -> Iterable[tuple[bytes, bytes]]: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content_type(self) -> str: ...
    @property
    def content(self) -> BodyReader: ...
    async def read(self) -> bytes: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


class UpstreamSession(Protocol):
    async def request(
        self,
        method: str,
        url: str,
        *,
        data: object = None,
        headers: Iterable[tuple[str, str]] = ...,
        allow_redirects: bool = ...,
        timeout: Timeouts | None = None,  # noqa: ASYNC109 (aiohttp's keyword: a per-phase policy)
    ) -> UpstreamResponse: ...

    async def close(self) -> None: ...


class UpstreamClient:
    def __init__(
        self,
        pool_size: int,
        guard: TenantUpstreamGuard,
        kind: Literal["lean", "aiohttp"] = "lean",
        network: OutboundNetwork | None = None,
    ) -> None:
        self._pool_size = pool_size
        self._guard = guard
        self._kind = kind
        self._network = network or OutboundNetwork()
        self._session: UpstreamSession | None = None
        self._tenant_session: AiohttpSession | None = None

    async def start(self) -> None:
        network = self._network
        if self._kind == "lean":
            self._session = Http1Client(
                self._pool_size, keepalive_timeout=60, ssl_context=network.ssl_context, proxy=network.proxy
            )
        else:
            from tenantgate.platform.upstream import aio

            self._session = aio.operator_session(self._pool_size, network)

    @property
    def session(self) -> UpstreamSession:
        """For the operator's upstreams (trusted)."""
        assert self._session is not None, "upstream client used before startup"
        return self._session

    async def tenant_session(self) -> UpstreamSession:
        """For tenant-set base URLs: connects only to addresses the SSRF guard permits.

        Made on first use, aiohttp imported in a worker thread (about 0.1 s of imports): the loop goes on serving
        other requests meanwhile, in the GIL's switch intervals."""
        assert self._session is not None, "upstream client used before startup"
        if self._tenant_session is None:
            aio = await asyncio.to_thread(importlib.import_module, "tenantgate.platform.upstream.aio")
            if self._tenant_session is None:  # not made by another request meanwhile
                self._tenant_session = aio.tenant_session(self._pool_size, self._guard, self._network.ssl_context)
        return self._tenant_session

    async def close(self) -> None:
        for session in (self._session, self._tenant_session):
            if session is not None:
                await session.close()
        self._session = self._tenant_session = None
