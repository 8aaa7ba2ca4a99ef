"""A lean HTTP/1.1 client for the operator's upstreams: pooled keep-alive connections, bytes in, bytes out.

Why not aiohttp here: per request, aiohttp's client built a URL object, a request and a response object with
their multidicts, a connection key, a timer context and trace hooks; under load that was about a quarter of the
gateway's CPU (py-spy; docs/decisions/003-own-http1-client.md). The gateway needs none of it: it forwards bytes it
already holds to a base URL it already knows. This client writes the request head and body in one ``write``, parses
the answer with httptools (llhttp, the parser uvicorn uses for requests) and hands the body over chunk by chunk.

It answers the part of aiohttp's interface the proxy uses (``request()``; a response with ``status``,
``raw_headers``, ``headers``, ``content_type``, ``content.readany()``, ``read()``, ``release()``, ``close()``) and
raises exception types named as aiohttp's (httperrors.py), so error handling and the error types on metrics and spans
are the same for both. Base URLs tenants set themselves go through aiohttp, whose connector carries the SSRF guard
(platform/upstream/aio.py).

Behaviour:
- One pool per process with at most ``limit`` open connections; a request waits for a free slot beyond that.
  Idle connections are reused most-recent first and closed after ``keepalive_timeout`` seconds unused.
- A request sent on a kept-alive connection the upstream had closed meanwhile (it got no byte of answer) is sent
  again on the next pooled or a new connection, when the body can be sent again; a fresh connection that fails is
  not retried here. Everything else is left to the proxy's retry policy.
- Bodies: ``bytes`` (sent with Content-Length), ``None`` (Content-Length 0 for POST), or an async iterable of
  bytes (sent chunked, paced by the socket's write buffer).
- Answers: Content-Length, chunked, or read until the upstream closes. The upstream is paused while more than
  64 KiB of answer waits unread (a slow client slows the upstream, not the gateway's memory).
- Timeouts (``errors.Timeouts``, as aiohttp's ``ClientTimeout``): ``sock_connect`` for connecting, ``total`` for
  the whole exchange up to the last byte of the answer, ``sock_read`` between two reads of the answer.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterable, Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from tenantgate.wire.http1conn import PAUSE_ABOVE, Connection, Http1Response
from tenantgate.wire.httperrors import (
    ClientConnectorError,
    ClientOSError,
    ClientProxyConnectionError,
    InvalidURL,
    ServerDisconnectedError,
    Timeouts,
)
from tenantgate.wire.proxy import ProxyConfig, ProxyURL, open_tunnel

_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


class _Origin:
    """Where a URL points: the pool's key, and the request-target and Host header to send."""

    __slots__ = ("absolute_target", "host", "host_header", "is_ssl", "key", "port", "target")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidURL(url)
        self.is_ssl = parts.scheme == "https"
        self.host = parts.hostname
        default_port = 443 if self.is_ssl else 80
        self.port = parts.port or default_port
        self.key = (self.host, self.port, self.is_ssl)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        self.target = target.encode("latin-1")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = (host if self.port == default_port else f"{host}:{self.port}").encode("latin-1")
        self.absolute_target = b"http://" + self.host_header + self.target  # as an http:// request to a proxy


@lru_cache(maxsize=1024)  # a gateway calls a handful of URLs (base URL + endpoint path); queries are rare
def _origin(url: str) -> _Origin:
    return _Origin(url)


class Http1Client:
    def __init__(
        self,
        limit: int,
        *,
        keepalive_timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        proxy: ProxyConfig | None = None,
    ) -> None:
        self.limit = limit
        self.keepalive_timeout = keepalive_timeout
        self._ssl = ssl_context
        self._proxy = proxy
        self._idle: dict[tuple[str, int, bool], list[Connection]] = {}
        self._open: set[Connection] = set()
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: object = None,
        headers: Iterable[tuple[str, str]] = (),
        allow_redirects: bool = False,
        timeout: Timeouts | None = None,  # noqa: ASYNC109 (aiohttp's keyword: a per-phase policy)
    ) -> Http1Response:
        """Send a request and return once the answer's head arrived. Redirects are never followed."""
        del allow_redirects  # accepted for aiohttp compatibility: a gateway never follows them
        origin = _origin(url)
        proxy = self._proxy.route(origin.is_ssl, origin.host, origin.port) if self._proxy is not None else None
        head = _request_head(method, origin, headers, data, proxy)
        replayable = data is None or isinstance(data, bytes)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout.total if timeout is not None and timeout.total is not None else None
        while True:
            conn = await self._acquire(origin, proxy, timeout, deadline)
            try:
                return await self._send(conn, head, data, timeout, deadline, head_only=method == "HEAD")
            except (ServerDisconnectedError, ClientOSError):
                # A kept-alive connection the upstream had closed meanwhile: nothing of this request was answered.
                if not (conn.reused and not conn.got_bytes and replayable):
                    raise

    async def _send(
        self,
        conn: Connection,
        head: bytes,
        data: object,
        timeouts: Timeouts | None,
        deadline: float | None,
        *,
        head_only: bool = False,
    ) -> Http1Response:
        response = Http1Response(conn, timeouts.sock_read if timeouts is not None else None)
        conn.attach(response, head_only=head_only)
        conn.got_bytes = False
        conn.head = conn.loop.create_future()
        if deadline is not None:
            # The total timeout runs until the answer's last byte; reads and the head wait end with it.
            response._deadline = conn.loop.call_at(deadline, response._timed_out)
        transport = conn.transport
        assert transport is not None
        try:
            if data is None:
                transport.write(head)
            elif isinstance(data, bytes):
                if len(data) < PAUSE_ABOVE:
                    transport.write(head + data)
                else:
                    transport.write(head)
                    transport.write(data)
            else:
                transport.write(head)
                await _send_chunked(conn, data)
            await conn.head
        except BaseException:
            response.close()
            raise
        return response

    async def _acquire(
        self, origin: _Origin, proxy: ProxyURL | None, timeouts: Timeouts | None, deadline: float | None
    ) -> Connection:
        loop = asyncio.get_running_loop()
        while True:
            idle = self._idle.get(origin.key)
            while idle:
                conn = idle.pop()
                if not conn.lost and loop.time() - conn.idle_since < self.keepalive_timeout:
                    conn.reused = True
                    return conn
                conn.close()
                self._open.discard(conn)
            if len(self._open) < self.limit:
                return await self._connect(origin, proxy, timeouts, deadline)
            if self._evict_idle():
                continue
            waiter = loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_slot_waiter()  # we were handed a free slot but leave: it goes to the next in line
                else:
                    waiter.cancel()
                raise

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection to another upstream, to make room under the limit."""
        oldest: Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self._idle[oldest.key].remove(oldest)
        oldest.close()
        self._open.discard(oldest)
        return True

    async def _connect(
        self, origin: _Origin, proxy: ProxyURL | None, timeouts: Timeouts | None, deadline: float | None
    ) -> Connection:
        """A new connection to ``origin``: direct, to the proxy (http), or through a CONNECT tunnel (https).
        ``sock_connect`` bounds all of it: the proxy's answer and the TLS handshake included."""
        loop = asyncio.get_running_loop()
        conn = Connection(self, origin.key)
        self._open.add(conn)
        ssl_context: ssl.SSLContext | None = None
        if origin.is_ssl:
            ssl_context = self._ssl or _default_ssl_context()
        try:
            connect_timeout = timeouts.sock_connect if timeouts is not None else None
            connect_deadline = loop.time() + connect_timeout if connect_timeout is not None else None
            if deadline is not None and (connect_deadline is None or deadline < connect_deadline):
                connect_deadline = deadline
            async with asyncio.timeout_at(connect_deadline):
                if proxy is None:
                    await loop.create_connection(
                        lambda: conn,
                        origin.host,
                        origin.port,
                        ssl=ssl_context,
                        server_hostname=origin.host if ssl_context is not None else None,
                    )
                elif ssl_context is None:
                    await self._connect_to_proxy(conn, proxy)
                else:
                    tunnel = await open_tunnel(proxy, origin.host, origin.port)
                    try:
                        tls = await loop.start_tls(tunnel, conn, ssl_context, server_hostname=origin.host)
                    except BaseException:
                        tunnel.abort()
                        raise
                    assert tls is not None
                    conn.connection_made(tls)
        except ClientConnectorError:
            self.forget(conn)
            raise
        except OSError as exc:
            self.forget(conn)
            raise ClientConnectorError(origin.host, origin.port, exc) from exc
        except BaseException:
            self.forget(conn)
            raise
        return conn

    @staticmethod
    async def _connect_to_proxy(conn: Connection, proxy: ProxyURL) -> None:
        try:
            await asyncio.get_running_loop().create_connection(lambda: conn, proxy.host, proxy.port)
        except OSError as exc:
            raise ClientProxyConnectionError(proxy.host, proxy.port, exc) from exc

    def put_back(self, conn: Connection) -> None:
        if self._closed:
            conn.close()
            self._open.discard(conn)
            return
        conn.idle_since = conn.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        self._wake_slot_waiter()
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(self.keepalive_timeout, self._sweep)

    def forget(self, conn: Connection) -> None:
        self._open.discard(conn)
        self._wake_slot_waiter()

    def connection_lost(self, conn: Connection) -> None:
        if conn.response is None:
            # Idle: drop it from the pool now rather than finding it dead on the next request.
            idle = self._idle.get(conn.key)
            if idle is not None and conn in idle:
                idle.remove(conn)
            self.forget(conn)

    def _wake_slot_waiter(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        self._sweeper = None
        if self._closed:
            return
        now = asyncio.get_running_loop().time()
        for idle in self._idle.values():
            stale = [conn for conn in idle if now - conn.idle_since >= self.keepalive_timeout]
            for conn in stale:
                idle.remove(conn)
                conn.close()
                self._open.discard(conn)
        if any(self._idle.values()):
            self._sweeper = asyncio.get_running_loop().call_later(self.keepalive_timeout, self._sweep)

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks


def _request_head(
    method: str, origin: _Origin, headers: Iterable[tuple[str, str]], data: object, proxy: ProxyURL | None
) -> bytes:
    through_proxy = proxy is not None and not origin.is_ssl  # https goes through a tunnel: the origin's own form
    target = origin.absolute_target if through_proxy else origin.target
    lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\nHost: ", origin.host_header, b"\r\n"]
    if through_proxy and proxy is not None and proxy.authorization is not None:
        lines.append(f"Proxy-Authorization: {proxy.authorization}\r\n".encode("latin-1"))
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"newline in the value of header {name!r}")
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    if data is None:
        if method not in _BODYLESS_METHODS:
            lines.append(b"Content-Length: 0\r\n")
    elif isinstance(data, bytes):
        lines.append(b"Content-Length: %d\r\n" % len(data))
    else:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


async def _send_chunked(conn: Connection, data: object) -> None:
    if not isinstance(data, AsyncIterable):
        raise TypeError(f"unsupported request body type {type(data).__name__}")
    transport = conn.transport
    assert transport is not None
    chunk: Any
    async for chunk in data:
        if conn.lost or (conn.response is not None and conn.response.done):
            conn.unfinished = True  # the upstream answered (or hung up) before the upload ended
            return
        if chunk:
            transport.write(b"%x\r\n" % len(chunk) + bytes(chunk) + b"\r\n")
            await conn.drain()
    if not conn.lost:
        transport.write(b"0\r\n\r\n")


@lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()
