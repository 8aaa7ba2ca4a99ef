"""One upstream connection of the lean HTTP/1.1 client (http1.py) and the answer being received on it.

``Connection`` is the asyncio protocol: it feeds the bytes to httptools and its callbacks fill the current
``Http1Response``, which the proxy reads (``content.readany()``, ``read()``) and then releases or closes. The pool
(``Http1Client``) decides what happens to a connection afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from typing import TYPE_CHECKING, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from tenantgate.wire.httperrors import (
    ClientConnectionError,
    ClientError,
    ClientOSError,
    ClientPayloadError,
    ClientResponseError,
    ServerDisconnectedError,
)

if TYPE_CHECKING:
    from tenantgate.wire.http1 import Http1Client

PAUSE_ABOVE = 2**16
"""Unread answer bytes above which the upstream is paused (and the request body size sent in a second write)."""
# An answer's head is refused beyond aiohttp's default limits, so both clients accept the same answers (and a broken
# upstream cannot make the head grow without end): a header's name and value together, the number of headers, and
# the bytes received before the head is complete.
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 128
MAX_HEAD_BYTES = 2**20


class _HeadRefused(Exception):
    """Raised in a parser callback to stop parsing; ``error`` is what the request fails with."""

    def __init__(self, error: ClientResponseError) -> None:
        self.error = error


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
        "content_type",
        "done",
        "keep_alive",
        "raw_headers",
        "status",
        "until_close",
    )

    def __init__(self, conn: Connection, read_timeout: float | None) -> None:
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
        self.content_type = "application/octet-stream"  # as aiohttp answers when there is no Content-Type
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

    # Fed by the connection.

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > PAUSE_ABOVE:
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
            self._finish(ClientConnectionError("response closed"))
            self._conn.response_released(False)


class Connection(asyncio.Protocol):
    def __init__(self, pool: Http1Client, key: tuple[str, int, bool]) -> None:
        self.loop = asyncio.get_running_loop()
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.lenient = False  # the upstream sent a head only the lenient parser reads (see _read_leniently)
        self.parser = _parser(self, lenient=False)
        # Weak: an answer the caller drops without release() or close() must not keep its connection busy for good
        # (aiohttp frees it in __del__); _abandoned closes the connection when that happens.
        self._response: weakref.ref[Http1Response] | None = None
        self.raw_headers: list[tuple[bytes, bytes]] = []  # of the answer being parsed
        self.headers_done = False  # headers after this are a chunked answer's trailers: dropped, as aiohttp does
        self.head_bytes = 0
        self.head_reads: list[bytes] = []  # what arrived of the head being parsed, to read it again leniently
        self.head_only = False  # the request was HEAD: the answer has no body whatever its headers say
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

    def attach(self, response: Http1Response, *, head_only: bool = False) -> None:
        self._response = weakref.ref(response, self._abandoned)
        self.raw_headers = []
        self.headers_done = False
        self.head_bytes = 0
        self.head_reads = []
        self.head_only = head_only

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
        response = self.response
        if response is None:
            self.close()  # bytes nobody asked for on an idle connection: it cannot be trusted any more
            return
        in_head = not response.status
        if in_head:
            self.head_bytes += len(data)
            self.head_reads.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if in_head and not response.status and not self.lenient and not isinstance(exc.__context__, _HeadRefused):
                self._read_leniently()
            else:
                self._refuse(exc, response)
            return
        if not response.status and self.head_bytes > MAX_HEAD_BYTES:
            self.fail(ClientResponseError(f"the answer's head passed {MAX_HEAD_BYTES} bytes"))
            self.close()

    def _read_leniently(self) -> None:
        """The strict parser refused the head: read it again as aiohttp would (folded lines, LF line ends), with
        every header checked one by one, and keep that parser for this connection. The usual head never gets here,
        so the strict parser's own checks spare it any Python work per header."""
        self.lenient = True
        self.parser = _parser(self, lenient=True)
        self.raw_headers = []
        try:
            self.parser.feed_data(b"".join(self.head_reads))
        except httptools.HttpParserError as exc:
            response = self.response
            if response is not None:
                self._refuse(exc, response)

    def _refuse(self, exc: httptools.HttpParserError, response: Http1Response) -> None:
        error: ClientError
        if isinstance(exc.__context__, _HeadRefused):
            error = exc.__context__.error
        elif not response.status:
            error = ClientResponseError(f"invalid HTTP response from the upstream: {exc}")
        else:
            error = ClientPayloadError(f"invalid HTTP response from the upstream: {exc}")
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
                self.fail(ClientPayloadError("Response payload is not completed"))
            elif isinstance(exc, OSError):
                self.fail(ClientOSError(exc.errno, exc.strerror))  # e.g. reset before answering, as aiohttp says
            else:
                self.fail(ServerDisconnectedError())
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ServerDisconnectedError())
        self.pool.connection_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_done:
            return
        if self.lenient and b"\x00" in value:  # the strict parser refuses it itself; RFC 9110 forbids it
            raise _HeadRefused(ClientResponseError("a header value of the answer holds a NUL byte"))
        self.raw_headers.append((name, value))

    def _check_limits(self) -> None:
        """aiohttp's limits on a head: looked at header by header only when the head's reads were large enough to
        break them (more bytes than one header may have), so the usual few-hundred-byte head costs nothing here."""
        headers = self.raw_headers
        if len(headers) > MAX_HEADERS:
            raise _HeadRefused(ClientResponseError(f"the answer has more than {MAX_HEADERS} headers"))
        if self.head_bytes > MAX_FIELD_SIZE:
            for name, value in headers:
                if len(name) + len(value) > MAX_FIELD_SIZE:
                    raise _HeadRefused(ClientResponseError(f"a header of the answer passed {MAX_FIELD_SIZE} bytes"))

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return  # abandoned meanwhile: the connection is closing
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.raw_headers = []  # an interim answer (100 Continue): the real one follows
            return
        self._check_limits()
        self.headers_done = True
        self.head_reads = []
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
            elif lowered == b"content-type":
                response.content_type = value.decode("latin-1").partition(";")[0].strip().lower()
        response.until_close = not (chunked or content_length) and status not in (204, 304)
        if self.head is not None and not self.head.done():
            self.head.set_result(None)
        if self.head_only and (chunked or content_length):
            # No body follows an answer to HEAD, but the parser would wait for the one its headers announce: the
            # answer ends here, and the next answer on this connection gets a parser of its own.
            response.until_close = False
            response._finish()
            self.parser = _parser(self, lenient=self.lenient)

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


def _parser(connection: Connection, *, lenient: bool) -> httptools.HttpResponseParser:
    """llhttp's strict parser, or one as lenient as aiohttp's with answers: folded header lines (obs-fold, read as
    one space), lines ended by LF alone, and spaces after a chunk size are accepted."""
    parser = httptools.HttpResponseParser(connection)
    if lenient:
        parser.set_dangerous_leniencies(
            lenient_headers=True, lenient_optional_cr_before_lf=True, lenient_spaces_after_chunk_size=True
        )
    return parser
