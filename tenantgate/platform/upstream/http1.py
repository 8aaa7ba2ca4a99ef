"""A lean HTTP/1.1 client for the operator's upstreams: pooled keep-alive connections, bytes in, bytes out.

Why not aiohttp here: per request, aiohttp's client built a URL object, a request and a response object with
their multidicts, a connection key, a timer context and trace hooks; under load that was about a quarter of the
gateway's CPU (py-spy, bench/README.md). The gateway needs none of it: it forwards bytes it already holds to a
base URL it already knows. This client writes the request head and body in one ``write``, parses the answer with
httptools (llhttp, the parser uvicorn uses for requests) and hands the body over chunk by chunk.

It answers the part of aiohttp's interface the proxy uses (``request()``; a response with ``status``,
``raw_headers``, ``headers``, ``content_type``, ``content.readany()``, ``read()``, ``release()``, ``close()``) and
raises aiohttp's exception types, so error handling and the error types on metrics and spans stay the same.
Base URLs tenants set themselves still go through aiohttp, whose connector carries the SSRF guard (client.py).

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
- Timeouts (aiohttp's ``ClientTimeout``): ``sock_connect`` for connecting, ``total`` for the whole exchange up to
  the last byte of the answer, ``sock_read`` between two reads of the answer.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import weakref
from collections.abc import AsyncIterable, Iterable
from functools import lru_cache
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import httptools
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict, CIMultiDictProxy

_PAUSE_ABOVE = 2**16
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


class _Origin:
    """Where a URL points: the pool's key, and the request-target and Host header to send."""

    __slots__ = ("host", "host_header", "is_ssl", "key", "port", "target")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise aiohttp.InvalidURL(url)
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


@lru_cache(maxsize=1024)  # a gateway calls a handful of URLs (base URL + endpoint path); queries are rare
def _origin(url: str) -> _Origin:
    return _Origin(url)


class Http1Response:
    """One answer being received. ``content`` is the response itself (``content.readany()`` as in aiohttp)."""

    __slots__ = (
        "__weakref__",
        "_buffered",
        "_chunks",
        "_conn",
        "_deadline",
        "_error",
        "_headers",
        "_read_timeout",
        "_released",
        "_waiter",
        "done",
        "keep_alive",
        "raw_headers",
        "status",
        "until_close",
    )

    def __init__(self, conn: _Connection, read_timeout: float | None) -> None:
        self._conn = conn
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._read_timeout = read_timeout
        self._headers: CIMultiDictProxy[str] | None = None
        self._released = False
        self._deadline: asyncio.TimerHandle | None = None
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.done = False
        self.keep_alive = False
        self.until_close = False  # neither Content-Length nor chunked: the body ends when the connection does

    @property
    def content(self) -> Http1Response:
        return self

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        if self._headers is None:
            self._headers = CIMultiDictProxy(
                CIMultiDict((name.decode("latin-1"), value.decode("latin-1")) for name, value in self.raw_headers)
            )
        return self._headers

    @property
    def content_type(self) -> str:
        for name, value in self.raw_headers:
            if name.lower() == b"content-type":
                return value.decode("latin-1").partition(";")[0].strip().lower()
        return "application/octet-stream"  # as aiohttp answers when there is no Content-Type

    # Fed by the connection.

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > _PAUSE_ABOVE:
            self._conn.pause()
        self._wake()

    def _finish(self, error: BaseException | None = None) -> None:
        if error is not None and not self.done:
            self._error = error
        self.done = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # Read by the proxy.

    async def readany(self) -> bytes:
        """The next bytes of the body (all that arrived since the last read), or b"" at its end."""
        if not self._chunks:
            if self._error is not None:
                raise self._error
            if self.done:
                return b""
            await self._wait()
            if not self._chunks:
                if self._error is not None:
                    raise self._error
                return b""
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self._conn.resume()
        return data

    async def read(self) -> bytes:
        """The whole body."""
        while not self.done:
            await self._wait()
        if self._error is not None:
            raise self._error
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return data

    async def _wait(self) -> None:
        self._conn.resume()
        loop = self._conn.loop
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(self._read_timeout, self._timed_out) if self._read_timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _timed_out(self) -> None:
        self._conn.fail(TimeoutError())
        self._conn.close()

    def release(self) -> None:
        """Done with this answer: its connection goes back to the pool if the answer was read to its end."""
        if self._released:
            return
        self._released = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._conn.response_released(self.done and self._error is None and self.keep_alive)

    def close(self) -> None:
        """Drop the connection (e.g. the client went away mid-stream: the upstream stops generating)."""
        if not self._released:
            self._released = True
            self._finish(aiohttp.ClientConnectionError("response closed"))
            self._conn.response_released(False)


class _Connection(asyncio.Protocol):
    def __init__(self, pool: Http1Client, key: tuple[str, int, bool]) -> None:
        self.loop = asyncio.get_running_loop()
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        # Weak: an answer the caller drops without release() or close() must not keep its connection busy for good
        # (aiohttp frees it in __del__); _abandoned closes the connection when that happens.
        self._response: weakref.ref[Http1Response] | None = None
        self.raw_headers: list[tuple[bytes, bytes]] = []  # of the answer being parsed
        self.head: asyncio.Future[None] | None = None
        self.got_bytes = False
        self.lost = False
        self.reused = False
        self.paused = False
        self.unfinished = False  # a request body was cut short: the connection cannot carry another request
        self.idle_since = 0.0
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False

    @property
    def response(self) -> Http1Response | None:
        ref = self._response
        return ref() if ref is not None else None

    def attach(self, response: Http1Response) -> None:
        self._response = weakref.ref(response, self._abandoned)
        self.raw_headers = []

    def _abandoned(self, ref: weakref.ref[Http1Response]) -> None:
        if self._response is ref:
            self._response = None
            self.head = None
            self.close()
            self.pool.forget(self)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.response is None:
            self.close()  # bytes nobody asked for on an idle connection: it cannot be trusted any more
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            error = aiohttp.ClientPayloadError(f"invalid HTTP response from the upstream: {exc}")
            self.fail(error)
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the response

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        response = self.response
        if response is not None and not response.done:
            if response.status and response.until_close and exc is None:
                response._finish()
            elif response.status:
                self.fail(aiohttp.ClientPayloadError("Response payload is not completed"))
            else:
                self.fail(aiohttp.ServerDisconnectedError())
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(aiohttp.ServerDisconnectedError())
        self.pool.connection_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return  # abandoned meanwhile: the connection is closing
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.raw_headers = []  # an interim answer (100 Continue): the real one follows
            return
        response.raw_headers = self.raw_headers
        response.status = status
        response.keep_alive = self.parser.should_keep_alive()
        chunked = content_length = False
        for name, value in response.raw_headers:
            lowered = name.lower()
            if lowered == b"content-length":
                content_length = True
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        response.until_close = not (chunked or content_length) and status not in (204, 304)
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is not None:
            response._feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is None or not response.status:
            return  # end of an interim answer
        response._finish()

    # Used by the pool and the response

    def fail(self, error: BaseException) -> None:
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
        response = self.response
        if response is not None:
            response._finish(error)

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.lost:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def response_released(self, reusable: bool) -> None:
        if self.head is not None and self.head.done() and not self.head.cancelled():
            self.head.exception()  # retrieved: a failure nobody waited for (e.g. during an upload) is not an error
        self._response = None
        self.head = None
        if reusable and not self.lost and not self.unfinished:
            self.resume()
            self.pool.put_back(self)
        else:
            self.close()
            self.pool.forget(self)

    async def drain(self) -> None:
        if self._write_paused and not self.lost:
            self._drain = self.loop.create_future()
            await self._drain


class Http1Client:
    def __init__(
        self, limit: int, *, keepalive_timeout: float = 60.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.limit = limit
        self.keepalive_timeout = keepalive_timeout
        self._ssl = ssl_context
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._open: set[_Connection] = set()
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
        timeout: aiohttp.ClientTimeout | None = None,  # noqa: ASYNC109 (aiohttp's keyword: a per-phase policy)
    ) -> Http1Response:
        """Send a request and return once the answer's head arrived. Redirects are never followed."""
        del allow_redirects  # accepted for aiohttp compatibility: a gateway never follows them
        origin = _origin(url)
        head = _request_head(method, origin, headers, data)
        replayable = data is None or isinstance(data, bytes)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout.total if timeout is not None and timeout.total is not None else None
        while True:
            conn = await self._acquire(origin, timeout, deadline)
            try:
                return await self._send(conn, head, data, timeout, deadline)
            except aiohttp.ServerDisconnectedError:
                # A kept-alive connection the upstream had closed meanwhile: nothing of this request was answered.
                if not (conn.reused and not conn.got_bytes and replayable):
                    raise

    async def _send(
        self,
        conn: _Connection,
        head: bytes,
        data: object,
        timeouts: aiohttp.ClientTimeout | None,
        deadline: float | None,
    ) -> Http1Response:
        response = Http1Response(conn, timeouts.sock_read if timeouts is not None else None)
        conn.attach(response)
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
                if len(data) < _PAUSE_ABOVE:
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
        self, origin: _Origin, timeouts: aiohttp.ClientTimeout | None, deadline: float | None
    ) -> _Connection:
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
                return await self._connect(origin, timeouts, deadline)
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
        oldest: _Connection | None = None
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
        self, origin: _Origin, timeouts: aiohttp.ClientTimeout | None, deadline: float | None
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self, origin.key)
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
                await loop.create_connection(
                    lambda: conn,
                    origin.host,
                    origin.port,
                    ssl=ssl_context,
                    server_hostname=origin.host if ssl_context is not None else None,
                )
        except OSError as exc:
            self.forget(conn)
            key = ConnectionKey(origin.host, origin.port, origin.is_ssl, True, None, None, None, None)
            raise aiohttp.ClientConnectorError(key, exc) from exc
        except BaseException:
            self.forget(conn)
            raise
        return conn

    def put_back(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            self._open.discard(conn)
            return
        conn.idle_since = conn.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        self._wake_slot_waiter()
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(self.keepalive_timeout, self._sweep)

    def forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        self._wake_slot_waiter()

    def connection_lost(self, conn: _Connection) -> None:
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


def _request_head(method: str, origin: _Origin, headers: Iterable[tuple[str, str]], data: object) -> bytes:
    lines = [method.encode("ascii"), b" ", origin.target, b" HTTP/1.1\r\nHost: ", origin.host_header, b"\r\n"]
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


async def _send_chunked(conn: _Connection, data: object) -> None:
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
