"""tenantgate's Redis client: one pipelined connection, RESP2, and subscriptions on connections of their own.

Why not redis-py: the limiter makes one EVALSHA per request on the hot path, and redis-py's asyncio command path
(connection pool checkout with a zero-timeout read probe, command packing, the retry wrapper, the parser) cost
about 300 us of CPU per call on this project's benchmark machine - more than the rest of the request path's own
work. This client writes every command of a loop iteration in one ``write()`` on one connection and matches
replies to callers in order (Redis answers in order on a connection), so concurrent requests share round trips
without any batching code above it. The rest of the gateway's Redis use (cache invalidation over pub/sub, stored
responses' owners, readiness) is a handful of plain commands, so it uses this client too rather than importing
redis-py for them: that was about 7 MB of every worker's memory.

A connection that breaks fails every call waiting on it; the next call reconnects. Errors derive from
``RedisError``; a connection that cannot be opened or breaks raises ``RedisConnectionError``.

The client is split by use: ``respcodec`` (encoding, parsing, errors), ``respendpoint`` (URLs and how a connection
starts), ``respsub`` (subscriptions) and this module (the pipelined command connection). Everything public is
importable from here.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from typing import Any, cast

from tenantgate.wire.respcodec import (
    Arg,
    Incomplete,
    NoScriptError,
    RedisConnectionError,
    RedisError,
    RedisStalled,
    ResponseError,
    Script,
    WrongServerError,
    bulk,
    encode,
    parse,
)
from tenantgate.wire.respendpoint import (
    SERVER_CHECK,
    Endpoint,
    RedisRefused,
    handshake_calls,
    open_protocol,
    server_refusal,
)
from tenantgate.wire.respsub import Subscription

__all__ = [
    "DEFER_SECONDS",
    "Arg",
    "Endpoint",
    "NoScriptError",
    "RedisConnectionError",
    "RedisError",
    "RedisRefused",
    "RedisStalled",
    "RespClient",
    "ResponseError",
    "Script",
    "Subscription",
    "WrongServerError",
    "bulk",
    "encode",
]

DEFER_SECONDS = 0.002
"""How long a call that nobody waits for (``urgent=False``) may wait for an urgent one to share its write."""


def _copy(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


class _Connection(asyncio.Protocol):
    def __init__(self, stall_timeout: float | None = None) -> None:
        # Kept: asyncio.get_running_loop() costs a getpid() system call per call (CPython checks for a fork).
        self.loop = asyncio.get_running_loop()
        self.stall_timeout = stall_timeout
        self.last_progress = 0.0
        self._suspected_at = -1.0
        self._watchdog: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.outgoing: list[bytes] = []
        self.buffer = bytearray()
        self.closed = False
        self.writes = 0
        self._soon = False
        self._later: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def send(self, command: bytes, future: asyncio.Future[Any], *, urgent: bool = True) -> None:
        if not self.waiting and self.stall_timeout is not None:
            loop = self.loop
            self.last_progress = loop.time()
            if self._watchdog is None:
                self._watchdog = loop.call_at(self.last_progress + self.stall_timeout, self._check_progress)
        self.outgoing.append(command)
        self.waiting.append(future)
        if urgent:
            # Everything queued during this loop iteration leaves in one write.
            if not self._soon:
                self._soon = True
                self.loop.call_soon(self._flush)
        elif not self._soon and self._later is None:
            # Not urgent: ride along with the next urgent write, or leave after a short wait.
            self._later = self.loop.call_later(DEFER_SECONDS, self._flush)

    def _flush(self) -> None:
        self._soon = False
        if self._later is not None:
            self._later.cancel()
            self._later = None
        if self.transport is not None and not self.closed and self.outgoing:
            self.transport.write(b"".join(self.outgoing))
            self.writes += 1
        self.outgoing.clear()

    def _check_progress(self) -> None:
        """Redis is considered stalled only when it sent nothing for ``stall_timeout`` while answers were owed.
        A slow event loop on our side (many requests at once) delays replies without any silence from Redis,
        so it never counts as an outage; one timer per connection, not one per command. When the timer finds the
        connection silent it looks once more after the loop's next I/O poll: a loop that was blocked runs its due
        timers before reading the sockets (libuv's order), and the answer may already be waiting there."""
        self._watchdog = None
        if not self.waiting or self.closed or self.stall_timeout is None:
            return
        loop = self.loop
        due = self.last_progress + self.stall_timeout
        if loop.time() < due:
            self._watchdog = loop.call_at(due, self._check_progress)
        elif self.last_progress != self._suspected_at:
            self._suspected_at = self.last_progress
            self._watchdog = loop.call_later(0.001, self._check_progress)
        else:
            self.abort(RedisStalled(f"Redis sent nothing for {self.stall_timeout * 1000:g} ms"))

    def data_received(self, data: bytes) -> None:
        if self.stall_timeout is not None:
            self.last_progress = self.loop.time()
        buffer = self.buffer
        buffer += data
        position = 0
        waiting = self.waiting
        try:
            while position < len(buffer):
                value, position = parse(buffer, position)
                future = waiting.popleft()
                if isinstance(value, Exception):
                    if not future.done():  # else its caller stopped waiting (timeout, cancellation)
                        future.set_exception(value)
                    if type(value) is WrongServerError:
                        # A replica or a Cluster node: fail the rest with it; the next call reconnects and checks
                        # the server (respendpoint.server_refusal) before anything else is sent.
                        self.abort(value)
                        return
                elif not future.done():
                    future.set_result(value)
        except Incomplete:
            pass
        except (RedisConnectionError, ValueError, IndexError) as exc:
            self.abort(RedisConnectionError(f"Redis protocol error: {exc}"))
            return
        del buffer[:position]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError("Connection to Redis lost"))

    def abort(self, error: Exception) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        self.closed = True
        for handle in (self._later, self._watchdog):
            if handle is not None:
                handle.cancel()
        self._later = self._watchdog = None
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


class RespClient:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        connect_timeout: float = 2.0,
        stall_timeout: float | None = None,
        subscribe_timeout: float | None = None,
    ) -> None:
        """``stall_timeout``: fail every waiting call (``RedisStalled``, a TimeoutError) and drop the connection
        when Redis sends nothing for that long while answers are owed. ``subscribe_timeout``: how long a
        subscription may take to connect and to answer its idle PING (default: ``connect_timeout``)."""
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self.stall_timeout = stall_timeout
        self.subscribe_timeout = subscribe_timeout if subscribe_timeout is not None else connect_timeout
        self._connection: _Connection | None = None
        self._connect_attempt: asyncio.Future[_Connection] | None = None
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self.writes = 0  # write() calls on connections closed so far (see ``write_count``)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        connect_timeout: float = 2.0,
        stall_timeout: float | None = None,
        subscribe_timeout: float | None = None,
    ) -> RespClient:
        return cls(
            Endpoint.parse(url),
            connect_timeout=connect_timeout,
            stall_timeout=stall_timeout,
            subscribe_timeout=subscribe_timeout,
        )

    @property
    def write_count(self) -> int:
        """How many writes carried commands: fewer than commands when calls shared round trips."""
        return self.writes + (self._connection.writes if self._connection is not None else 0)

    async def execute(self, *args: Arg, urgent: bool = True) -> Any:
        """Send one command, return its reply. ``urgent=False``: may wait ``DEFER_SECONDS`` for company."""
        return await self.execute_command(encode(args), urgent=urgent)

    async def execute_command(self, command: bytes, *, urgent: bool = True) -> Any:
        """Send one command the caller encoded itself (the whole RESP array), return its reply."""
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        future: asyncio.Future[Any] = connection.loop.create_future()
        connection.send(command, future, urgent=urgent)
        return await future

    async def evalsha(self, script: Script, keys: list[str], args: list[Arg], *, urgent: bool = True) -> Any:
        command = encode(("EVALSHA", script.sha, len(keys), *keys, *args))
        return await self.evalsha_command(script, command, urgent=urgent)

    async def evalsha_command(self, script: Script, command: bytes, *, urgent: bool = True) -> Any:
        """An EVALSHA of ``script``, already encoded (the hot path assembles most of it from cached pieces)."""
        try:
            return await self.execute_command(command, urgent=urgent)
        except NoScriptError:
            # The server forgot its scripts (restart, SCRIPT FLUSH, failover): load it, once for all the calls
            # that failed together, then call again. The script's SHA, and so the command, stays the same.
            await self._load(script)
            return await self.execute_command(command, urgent=urgent)

    async def _load(self, script: Script) -> None:
        loading = self._loading.get(script.sha)
        if loading is None:
            loading = asyncio.ensure_future(self.execute("SCRIPT", "LOAD", script.source))
            self._loading[script.sha] = loading
            loading.add_done_callback(lambda _: self._loading.pop(script.sha, None))
        await asyncio.shield(loading)

    def fire(self, script: Script, command: bytes, *, urgent: bool = True) -> asyncio.Future[Any]:
        """An EVALSHA of ``script``, already encoded, without a coroutine: queue it now, return the future of its
        reply (NOSCRIPT handled as in ``evalsha_command``). For calls nobody awaits; cheaper than a task per call."""
        connection = self._connection
        if connection is None or connection.closed:
            return asyncio.get_running_loop().create_task(self.evalsha_command(script, command, urgent=urgent))
        loop = connection.loop
        result: asyncio.Future[Any] = loop.create_future()
        first: asyncio.Future[Any] = loop.create_future()
        connection.send(command, first, urgent=urgent)

        def settle(done: asyncio.Future[Any]) -> None:
            if result.done():
                return
            error = done.exception()
            if isinstance(error, NoScriptError):
                retry = loop.create_task(self.evalsha_command(script, command, urgent=urgent))
                retry.add_done_callback(functools.partial(_copy, target=result))
            else:
                _copy(done, result)

        first.add_done_callback(settle)
        return result

    async def _connect(self) -> _Connection:
        # One attempt shared by every call that found no connection, so they all go on in the same iteration.
        if self._connect_attempt is None:
            if self._connection is not None:
                self.writes += self._connection.writes
                self._connection = None
            self._connect_attempt = asyncio.ensure_future(self._open())
        attempt = self._connect_attempt
        try:
            connection = await asyncio.shield(attempt)
        finally:
            if attempt.done() and self._connect_attempt is attempt:
                self._connect_attempt = None
        return connection

    async def _open(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                connection = await open_protocol(self.endpoint, functools.partial(_Connection, self.stall_timeout))
                try:
                    await self._handshake(connection)
                except BaseException:
                    connection.abort(RedisConnectionError("Redis handshake failed"))
                    raise
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"Cannot connect to Redis ({type(exc).__name__})") from None
        self._connection = connection
        return connection

    async def _handshake(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        for call in handshake_calls(self.endpoint):
            future: asyncio.Future[Any] = loop.create_future()
            connection.send(encode(call), future)
            await future
        await self._check_server(connection)

    async def _check_server(self, connection: _Connection) -> None:
        """Raise ``RedisRefused`` unless the server is a standalone master (see ``server_refusal``)."""
        loop = connection.loop
        futures: list[asyncio.Future[Any]] = []
        for call in SERVER_CHECK:
            futures.append(loop.create_future())
            connection.send(encode(call), futures[-1])
        replies = await asyncio.gather(*futures, return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, ResponseError):
                raise reply  # the connection broke; an error reply (NOPERM...) only leaves the question open
        refusal = server_refusal(self.endpoint, *replies)
        if refusal is not None:
            raise RedisRefused(refusal)

    async def check(self) -> None:
        """Raise unless Redis answers as a server this client can use: ``RedisConnectionError`` when it cannot be
        reached, ``RedisRefused`` (a subclass) when it is a replica, a Sentinel or a Cluster node - then the
        connection is dropped, so calls reconnect and check again. For readiness and for the start of a process:
        a failover can turn the server behind a connection into a replica without closing the connection."""
        connection = self._connection
        if connection is None or connection.closed:
            await self._connect()  # a new connection is checked before anything else is sent on it
            return
        try:
            await self._check_server(connection)
        except RedisRefused as exc:
            connection.abort(exc)
            raise

    def subscribe(self, *channels: str) -> Subscription:
        """``async with client.subscribe(channel) as subscription``: see ``Subscription``."""
        return Subscription(self.endpoint, channels, connect_timeout=self.subscribe_timeout)

    async def aclose(self) -> None:
        if self._connection is not None:
            self.writes += self._connection.writes
            if self._connection.transport is not None:
                self._connection.transport.close()
            self._connection.closed = True
            self._connection = None
