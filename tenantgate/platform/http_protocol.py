"""Bounded HTTP/1.1 connections: uvicorn's httptools protocol with limits on what an unauthenticated caller can make a
worker hold, before any application code runs.

uvicorn's httptools protocol has no limit on the size of a request head (httptools accumulates a header value in
memory however long it is: a 64 MiB header was accepted, and four of them took a worker from 108 to 876 MiB while
/healthz stalled for seconds), no deadline for a head that trickles in, and none for a connection that never sends
a byte. This protocol adds, per connection:

- a head (request line and headers) of at most ``max_head_bytes`` and ``max_headers`` headers, else ``431`` and
  the connection is closed; the bytes beyond the limit are never handed to the parser;
- ``head_timeout`` seconds from the connection, or from the first byte of a later request on it, to a complete head,
  else the connection is closed (``408`` if part of a head arrived); idle kept-alive connections close after
  uvicorn's keep-alive timeout;
- at most ``max_connections`` open connections per worker, and ``max_connections_per_source`` from one client
  address (IPv6: one /64; trusted proxies and loopback exempt, their clients are many): one more is answered
  ``503`` at once and closed, so one client cannot take every connection of a worker;
- at most ``max_pending_head_bytes`` of heads still on their way across the worker's connections: a read that
  would hold more is answered ``503`` and its connection closed (2,000 connections each trickling a 31 KiB head took
  a worker from 99 to 177 MB; most heads arrive in one read and never count).

- a body that stops arriving for ``body_idle_timeout`` seconds (or takes ``body_timeout`` in all) is answered
  ``408`` and the connection closed; time while uvicorn has paused reading (the application is not reading the body
  yet) does not count against the client. Most bodies arrive with their head: they cost no timer at all.

This module imports no web framework: the process supervising ``serve --workers N`` loads it too.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tenantgate.settings import Settings
from tenantgate.tenants.auth_throttle import source_of


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_head_bytes: int = 32 * 1024
    max_headers: int = 100
    head_timeout: float = 10.0
    body_idle_timeout: float = 30.0
    body_timeout: float = 300.0
    max_connections: int = 2048
    max_connections_per_source: int = 512
    max_pending_head_bytes: int = 8 * 1024 * 1024
    exempt_sources: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Peers whose connections count against no per-source cap (the trusted proxies); 0.0.0.0/0 and ::/0 for *."""

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_head_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
            head_timeout=settings.http_header_timeout_seconds,
            body_idle_timeout=settings.http_body_idle_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
            max_connections=settings.http_max_connections,
            max_connections_per_source=settings.http_max_connections_per_source,
            max_pending_head_bytes=settings.http_max_pending_header_bytes,
            exempt_sources=_LOOPBACK + _networks(settings.trusted_proxies),
        )


# Loopback peers are a sidecar (a service mesh's proxy makes every client one loopback address) or the machine itself.
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def _networks(trusted: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in (part.strip() for part in trusted.split(",")):
        if item == "*":
            return (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            continue  # a host name or a socket path: uvicorn's business, not an address to exempt
    return tuple(networks)


def _source(peer: Any, exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> str | None:
    """The unit a per-source cap counts (an IPv4 address, an IPv6 /64: ``source_of``), or None if exempt or not an
    IP peer."""
    if not isinstance(peer, tuple) or not peer:
        return None
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in exempt):
        return None
    return source_of(peer)  # the auth throttle's unit too


class _WorkerBudgets:
    """What the connections of one worker hold together (one event loop: plain counters)."""

    __slots__ = ("by_source", "pending_head_bytes")

    def __init__(self) -> None:
        self.by_source: dict[str, int] = {}
        self.pending_head_bytes = 0


_BUDGETS = _WorkerBudgets()


_LINGER_SECONDS = 2.0
_LINGER_BYTES = 64 * 1024
_JOIN_BYTES = 64 * 1024


def _response(status: int, reason: str, message: str, code: str, extra: bytes = b"") -> bytes:
    kind = "invalid_request_error" if status < 500 else "api_error"
    body = orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + extra + b"connection: close\r\n\r\n" + body


_TOO_LARGE = _response(
    431, "Request Header Fields Too Large", "The request's headers are too large.", "headers_too_large"
)
_BAD_FRAMING = _response(
    400, "Bad Request", "Transfer-Encoding must be exactly 'chunked'; no other transfer coding is accepted.",
    "invalid_framing",
)  # fmt: skip
_MALFORMED = _response(
    400, "Bad Request", "The request could not be read as HTTP/1.1 (its request line, headers or framing).",
    "invalid_http_request",
)  # fmt: skip
_TOO_SLOW = _response(408, "Request Timeout", "The request's headers did not arrive in time.", "request_timeout")
_BODY_TOO_SLOW = _response(408, "Request Timeout", "The request's body did not arrive in time.", "request_timeout")
_BUSY = _response(
    503, "Service Unavailable", "This server has too many open connections. Retry shortly.", "too_many_connections",
    b"retry-after: 1\r\n",
)  # fmt: skip


class RefusalAnswerer(Protocol):
    """What answers a request from its head alone (platform/refusal_lane.py), found on the served app as
    ``refusal_lane``; this module imports no application code."""

    @property
    def armed(self) -> bool: ...

    def answer(
        self,
        method: bytes,
        url: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        default_headers: Sequence[tuple[bytes, bytes]],
    ) -> tuple[bytes, float] | None: ...

    def release(self) -> None: ...


def _lane_of(app: Any) -> RefusalAnswerer | None:
    """The app's refusal lane, through uvicorn's wrappers (proxy headers, message logger)."""
    for _ in range(4):
        lane = getattr(app, "refusal_lane", None)
        if lane is not None:
            return lane  # type: ignore[no-any-return]
        app = getattr(app, "app", None)
    return None


class _Idle:
    def set(self) -> None:
        pass


class _Answered:
    """Stands in for uvicorn's request cycle of a request the protocol answered itself (as far as uvicorn's
    callbacks look at it): the body that follows is dropped, a request behind it waits in uvicorn's pipeline."""

    __slots__ = ("disconnected", "keep_alive", "lane", "response_complete", "timer")
    response_started = True
    message_event = _Idle()

    def __init__(self, lane: RefusalAnswerer) -> None:
        self.lane = lane
        self.response_complete = False
        self.keep_alive = True
        self.disconnected = False
        self.timer: asyncio.TimerHandle | None = None


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above (given with ``functools.partial(..., limits=...)``), and
    the app's refusal lane when it has one."""

    def __init__(self, *args: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lane = _lane_of(self.app)
        self._limits = limits
        self._in_head = True
        self._head_begun = False  # a request's first byte came, its head is not complete yet
        self._head_bytes = 0
        self._requests_ended = 0  # requests read whole on this connection (a read may hold several, pipelined)
        self._check_heads = False  # pipelined reads came: each head is measured whole once complete
        self._header_count = 0
        self._bad_framing = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._accepted = False
        self._refused = False  # answered and closing: the parser's remaining callbacks are ignored
        self._drained = 0
        self._in_body = False  # between a head and the end of its body
        self._body_started = 0.0
        self._body_progress = 0.0
        self._body_timer: asyncio.TimerHandle | None = None
        self._source: str | None = None
        self._pending = 0  # bytes of this connection's unfinished head counted in _BUDGETS.pending_head_bytes
        self._idle_since = 0.0  # when the lane's last answer (or its request's body) ended
        self._idle_timer: asyncio.TimerHandle | None = None  # the keep-alive deadline after the lane's answers

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limits = self._limits
        source = _source(transport.get_extra_info("peername"), limits.exempt_sources)
        by_source = _BUDGETS.by_source
        if len(self.connections) >= limits.max_connections or (
            source is not None and by_source.get(source, 0) >= limits.max_connections_per_source
        ):
            self._refused = True
            transport.write(_BUSY)
            transport.close()
            return
        if source is not None:
            by_source[source] = by_source.get(source, 0) + 1
            self._source = source
        self._accepted = True
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        cycle: Any = self.cycle
        if isinstance(cycle, _Answered) and cycle.timer is not None:
            cycle.timer.cancel()
            cycle.timer = None
            cycle.lane.release()
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._count_pending(0)
        source = self._source
        if source is not None:
            self._source = None
            left = _BUDGETS.by_source[source] - 1
            if left:
                _BUDGETS.by_source[source] = left
            else:
                del _BUDGETS.by_source[source]
        if self._accepted:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            # Answered already: lingering, dropping the rest; a client that keeps sending is cut off (a reset).
            self._drained += len(data)
            if self._drained > _LINGER_BYTES:
                self.transport.abort()
            return
        if self._in_head:
            while len(data) > (room := self._limits.max_head_bytes - self._head_bytes):
                # Feed only what fits: the head may end inside it (a body or the next request follows).
                head, data = data[:room], data[room:]
                self._head_bytes += len(head)
                ended = self._requests_ended
                super().data_received(head)
                if self._refused:
                    return
                if not self._in_head:
                    self._check_heads = True  # a body follows, fed whole below: heads after it are measured whole
                    break
                if self._requests_ended == ended:
                    self._refuse(_TOO_LARGE)  # one head ran through all the room it had
                    return
                # Pipelined requests: the head in progress began inside this read, after the last one's end. Only
                # its own bytes count against its room: what the parser has handed over of it (short by a header
                # still being read), and each head of this connection is measured whole when it is complete.
                self._check_heads = True
                self._head_bytes = self._head_parsed()
            else:
                self._head_bytes += len(data)
        super().data_received(data)
        if self._head_begun:
            # A head still on its way after this read: what it holds counts against the worker's budget.
            pending = self._head_bytes
            if _BUDGETS.pending_head_bytes - self._pending + pending > self._limits.max_pending_head_bytes:
                self._refuse(_BUSY)
                self._count_pending(0)
                return
            self._count_pending(pending)
        elif self._pending:
            self._count_pending(0)
        if self._head_begun and self._head_timer is None:
            # A head still on its way after this read (most heads arrive whole: no timer at all). Its deadline runs
            # from this read, the one that brought its first byte.
            self._arm_head_timer()
        if self._in_body and self._body_timer is None:
            # A body still on its way after this read (most bodies arrive with their head: no timer at all).
            self._body_timer = self.loop.call_at(self._body_deadline(), self._body_timed_out)

    def _head_parsed(self) -> int:
        """The bytes of the head in progress the parser has handed over: its target and its complete headers, each
        with its ``: `` and line end (a header still being read is not counted yet)."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _count_pending(self, pending: int) -> None:
        _BUDGETS.pending_head_bytes += pending - self._pending
        self._pending = pending

    def on_message_begin(self) -> None:
        # The first byte of a request: its head must be complete within the deadline from now (data_received arms
        # the timer if this read did not bring the whole head). (Between requests a
        # kept-alive connection is uvicorn's keep-alive timer's business, so an idle connection lives as long as
        # TENANTGATE_HTTP_KEEPALIVE_TIMEOUT_SECONDS says, whatever the head deadline.)
        super().on_message_begin()
        self._in_head, self._header_count, self._head_begun = True, 0, True
        self._bad_framing = False

    def send_400_response(self, msg: str) -> None:
        """A request the parser could not read (a malformed line or header, ambiguous framing: Content-Length with
        Transfer-Encoding, two Content-Lengths, ``chunked`` not last): OpenAI's error shape instead of uvicorn's
        plain text, and the connection closed."""
        self._head_begun = False  # no head on its way any more: nothing of it counts against the worker's budget
        self._refuse(_MALFORMED)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if len(name) == 17 and name.lower() == b"transfer-encoding" and value.strip().lower() != b"chunked":
            # ``identity, chunked``, ``gzip, chunked``...: the parser takes the body as chunked, a front or upstream
            # may not (RFC 9112 6.1: only ``chunked`` is a coding a request to this server may use). Like every
            # other ambiguous framing (CL with TE, two CLs, ``chunked`` not last), a 400 and the connection closed.
            self._bad_framing = True
        if self._header_count <= self._limits.max_headers:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes, self._head_begun = False, 0, False
        if self._head_timer is not None:
            self._cancel_head_timer()
        if self._header_count > self._limits.max_headers:
            self._refuse(_TOO_LARGE)
            return
        if self._bad_framing:
            self._refuse(_BAD_FRAMING)
            return
        # The request line's method, spaces, version and line ends, and the empty line: 14 bytes beside the method.
        if self._check_heads and self._head_parsed() + 14 + len(self.parser.get_method()) > self._limits.max_head_bytes:
            self._refuse(_TOO_LARGE)
            return
        lane = self._lane
        if lane is not None and lane.armed and self._answerable():
            answer = lane.answer(self.parser.get_method(), self.url, self.headers, self.server_state.default_headers)
            if answer is not None:
                self._answer(lane, *answer)
                return
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _HeadJoinedToBody(self.transport, self.loop)  # type: ignore[assignment]
        self._in_body = True  # until on_message_complete, possibly later in this same read
        self._body_started = self._body_progress = self.loop.time()

    def _answerable(self) -> bool:
        """Nothing else in progress on this connection, and nothing about the request uvicorn's cycle would
        treat specially (HTTP/1.0, ``connection: close``, an upgrade, ``expect: 100-continue``, a root path)."""
        cycle = self.cycle
        parser = self.parser
        return (
            (cycle is None or cycle.response_complete)
            and not self.pipeline
            and not self.expect_100_continue
            and not self.root_path
            and parser.should_keep_alive()
            and parser.get_http_version() == "1.1"
            and not parser.should_upgrade()
        )

    def _answer(self, lane: RefusalAnswerer, response: bytes, wait: float) -> None:
        answered = _Answered(lane)
        self.cycle = answered  # type: ignore[assignment]
        self._in_body = True  # its body (if any) is read and dropped, under the same deadlines
        self._body_started = self._body_progress = self.loop.time()
        if wait > 0:
            answered.timer = self.loop.call_later(wait, self._send_answer, answered, response, True)
        else:
            self._send_answer(answered, response, False)

    def _send_answer(self, answered: _Answered, response: bytes, held: bool) -> None:
        answered.timer = None
        if held:
            answered.lane.release()
        if self.transport.is_closing():
            return
        self.transport.write(response)
        answered.response_complete = True
        if not answered.keep_alive:  # the server is shutting down
            self.transport.close()
        if self.pipeline:
            self.on_response_complete()  # uvicorn starts the request waiting behind this one
            return
        # uvicorn's on_response_complete, with one difference: the keep-alive deadline is moved, not re-armed.
        # uvicorn makes a timer per answer and cancels it when the next request's first byte comes; under a flood
        # of refusals on kept-alive connections that was about a tenth of a refusal's CPU (measured in process,
        # without the socket's system calls). ``_idle_check`` fires at most once per keep-alive timeout and closes
        # the connection if it has been idle that long since this answer.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        self._idle_since = self.loop.time()
        if self._idle_timer is None:
            self._idle_timer = self.loop.call_at(self._idle_since + self.timeout_keep_alive, self._idle_check)

    def _idle_check(self) -> None:
        """The keep-alive deadline after the lane's answers: close a connection idle for the keep-alive timeout
        since the last of them, look again later at one still busy; stop once uvicorn's own timer (armed after an
        answer of the application) or the connection's end takes over."""
        self._idle_timer = None
        if self.transport.is_closing() or self.timeout_keep_alive_task is not None:
            return
        cycle = self.cycle
        now = self.loop.time()
        if self._in_head and not self._head_begun and not self.pipeline and (cycle is None or cycle.response_complete):
            deadline = self._idle_since + self.timeout_keep_alive
            if now >= deadline:
                self.timeout_keep_alive_handler()
                return
        else:  # a request in progress: the head and body deadlines are its business
            deadline = now + self.timeout_keep_alive
        self._idle_timer = self.loop.call_at(deadline, self._idle_check)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            self._body_progress = self.loop.time()
            if not isinstance(self.cycle, _Answered):
                super().on_body(body)

    def on_message_complete(self) -> None:
        # The request's last body byte: whatever the client sends next is the next request's head, counted from
        # now (not from our answer, which may go out before the client has sent all of its body).
        self._in_head, self._head_bytes, self._in_body = True, 0, False
        self._requests_ended += 1
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if isinstance(self.cycle, _Answered):
            self._idle_since = self.loop.time()  # idle from the end of the body the answer did not wait for
        elif not self._refused:
            super().on_message_complete()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self._limits.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            # A connection idle between requests is closed quietly (uvicorn's keep-alive timeout usually did);
            # a head that began and never finished gets a 408.
            if self._head_bytes:
                self._refuse(_TOO_SLOW)
            else:
                self.transport.close()

    def _body_deadline(self) -> float:
        return min(self._body_progress + self._limits.body_idle_timeout, self._body_started + self._limits.body_timeout)

    def _body_timed_out(self) -> None:
        """The client stopped sending its body (or took too long in all): answer 408 unless an answer began, close.
        While uvicorn has paused reading (the application is not reading the body yet), the client is not to blame:
        the idle clock restarts."""
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow is not None and self.flow.read_paused and now < self._body_started + self._limits.body_timeout:
            self._body_progress = now
        if now < self._body_deadline():
            self._body_timer = self.loop.call_at(self._body_deadline(), self._body_timed_out)
            return
        self._in_body = False
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
        else:
            self._refuse(_BODY_TOO_SLOW)

    def _refuse(self, response: bytes) -> None:
        """Answer and close. Lingering, as nginx does: the answer goes out with a FIN, and what the client is still
        sending is read and dropped for up to ``_LINGER_SECONDS`` and ``_LINGER_BYTES``, so that closing with unread
        bytes does not reset the connection and lose the answer before the client reads it; a client still sending
        beyond that (an attack, not a mistake) is reset, so refusing it costs no more reading."""
        self._cancel_head_timer()
        self._refused, self._in_head = True, False
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._head_timer = self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


class _HeadJoinedToBody:
    """A response's transport that sends its head with its first body chunk: one write (one system call) instead
    of two. uvicorn writes the head as soon as the application starts its response, then each body chunk; most
    answers (every 429 and error, every non-streamed answer) are a head and one body sent in the same turn of the
    event loop. The head is held until the next write, or sent alone at the end of this turn of the loop (a stream
    whose first chunk is not ready yet, an answer to HEAD) - never later than the event loop's next iteration."""

    __slots__ = ("_flush", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = b""  # b"": nothing written yet; None: the head went out, write through
        self._flush: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._transport.write(data)
        elif held:
            self._held = None
            if self._flush is not None:
                self._flush.cancel()
                self._flush = None
            if len(data) <= _JOIN_BYTES:
                self._transport.write(held + data)
            else:  # not worth copying a large body to save a system call
                self._transport.write(held)
                self._transport.write(data)
        else:
            self._held = bytes(data)
            self._flush = self._loop.call_soon(self._send_held)

    def _send_held(self) -> None:
        self._flush = None
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        if self._held:
            self._send_held()
        self._transport.close()

    def is_closing(self) -> bool:  # asked by uvicorn on every send
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def protocol_factory(limits: HttpLimits) -> Any:
    """What uvicorn's ``http=`` takes: a picklable callable making the protocol (workers are spawned)."""
    return functools.partial(BoundedHttpToolsProtocol, limits=limits)
