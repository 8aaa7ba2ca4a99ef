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
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

Arg = str | int | bytes
DEFER_SECONDS = 0.002
"""How long a call that nobody waits for (``urgent=False``) may wait for an urgent one to share its write."""


class RedisError(Exception):
    pass


class RedisConnectionError(RedisError):
    """Redis could not be reached, or the connection broke or spoke something that is not RESP."""


class ResponseError(RedisError):
    """Redis answered the command with an error."""


class NoScriptError(ResponseError):
    """EVALSHA of a script the server does not hold (it is loaded and called again)."""


@dataclass(slots=True)
class Script:
    """A Lua script called by its SHA1 (EVALSHA), loaded on the server when it answers NOSCRIPT."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())  # Redis names scripts by SHA1


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    unix_path: str | None
    tls: bool
    username: str | None
    password: str | None = field(repr=False)
    db: int
    client_name: str | None = None

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or ``unix:///path?db=N``; the query
        parameter ``client_name`` names the connections (``CLIENT SETNAME``, shown by ``CLIENT LIST``).

        Anything else raises ValueError saying what is not supported - Sentinel and Cluster URLs, other schemes,
        query options this client would otherwise ignore (redis-py's ``ssl_cert_reqs``, ``socket_timeout``...) -
        and never the URL itself (it may hold a password)."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise ValueError("not a valid Redis URL (redis://[[user]:password@]host[:port][/db])") from None
        scheme = parts.scheme.lower()
        if "sentinel" in scheme:
            raise ValueError(
                "Redis Sentinel URLs are not supported: give the address of the current master "
                "(redis://host:port), or of a proxy that follows Sentinel's failovers"
            )
        if "cluster" in scheme:
            raise ValueError("Redis Cluster is not supported: give the address of a single Redis (redis://host:port)")
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {scheme!r} (redis://, rediss:// or unix://)")
        try:
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise ValueError("the Redis URL's query string cannot be read") from None
        unknown = sorted(set(query) - _URL_OPTIONS)
        if unknown:
            raise ValueError(
                f"unsupported Redis URL option(s) {', '.join(unknown)} (supported: {', '.join(sorted(_URL_OPTIONS))})"
            )
        db_text = parts.path.lstrip("/") if scheme != "unix" else ""
        db_text = db_text or query.get("db", ["0"])[0]
        if not db_text.isdigit():
            raise ValueError("the Redis database must be a number (redis://host:port/0)")
        client_name = query["client_name"][0] if "client_name" in query else None
        if client_name is not None and (not client_name.isprintable() or " " in client_name):
            raise ValueError("the Redis URL's client_name may not hold spaces or control characters")
        if scheme == "unix" and not parts.path:
            raise ValueError("a unix:// Redis URL needs the socket's path (unix:///run/redis.sock)")
        return cls(
            host=parts.hostname or "localhost",
            port=port or 6379,
            unix_path=parts.path if scheme == "unix" else None,
            tls=scheme == "rediss",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            db=int(db_text),
            client_name=client_name,
        )


_URL_OPTIONS = frozenset({"db", "client_name"})


_BULK: dict[str, bytes] = {}
"""Encoded string arguments: the limiter's keys, script SHA and kinds repeat from request to request."""
_BULK_MAX = 16_384
_SMALL_INTS = [b"$%d\r\n%d\r\n" % (len(str(i)), i) for i in range(1024)]


def encode(args: tuple[Arg, ...]) -> bytes:
    return b"".join([b"*%d\r\n" % len(args), *map(bulk, args)])


def bulk(arg: Arg, *, cache: bool = True) -> bytes:
    """One argument as a RESP bulk string (``cache=False`` for values that never repeat, e.g. lease ids)."""
    if type(arg) is int and 0 <= arg < 1024:
        return _SMALL_INTS[arg]
    if cache and type(arg) is str:
        found = _BULK.get(arg)
        if found is not None:
            return found
    data = arg if isinstance(arg, bytes) else (arg.encode() if isinstance(arg, str) else str(int(arg)).encode())
    encoded = b"$%d\r\n%b\r\n" % (len(data), data)
    if cache and type(arg) is str:
        if len(_BULK) >= _BULK_MAX:
            _BULK.clear()
        _BULK[arg] = encoded
    return encoded


def _copy(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


class _Incomplete(Exception):
    pass


def _parse(buffer: bytearray, position: int) -> tuple[Any, int]:
    """One reply starting at ``position``: (value, end). Raises _Incomplete when more bytes are needed."""
    line_end = buffer.find(b"\r\n", position)
    if line_end < 0:
        raise _Incomplete
    kind = buffer[position]
    body = bytes(buffer[position + 1 : line_end])
    after = line_end + 2
    if kind == 58:  # ':' integer
        return int(body), after
    if kind == 36:  # '$' bulk string
        length = int(body)
        if length < 0:
            return None, after
        if len(buffer) < after + length + 2:
            raise _Incomplete
        return bytes(buffer[after : after + length]), after + length + 2
    if kind == 42:  # '*' array
        count = int(body)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            if buffer[after : after + 1] == b":":  # integers (the limiter's replies) without a recursive call
                end = buffer.find(b"\r\n", after)
                if end < 0:
                    raise _Incomplete
                items.append(int(buffer[after + 1 : end]))
                after = end + 2
            else:
                item, after = _parse(buffer, after)
                items.append(item)
        return items, after
    if kind == 43:  # '+' simple string
        return body.decode(), after
    if kind == 45:  # '-' error
        message = body.decode(errors="replace")
        return (NoScriptError if message.startswith("NOSCRIPT") else ResponseError)(message), after
    raise RedisConnectionError(f"unexpected reply type {chr(kind)!r} from Redis")


class RedisStalled(TimeoutError):
    """Redis stayed silent for the whole stall timeout while answers were owed."""


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
                value, position = _parse(buffer, position)
                future = waiting.popleft()
                if future.done():
                    continue  # its caller stopped waiting (timeout, cancellation)
                if isinstance(value, Exception):
                    future.set_exception(value)
                else:
                    future.set_result(value)
        except _Incomplete:
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
                connection = await _create(self.endpoint, functools.partial(_Connection, self.stall_timeout))
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
        for call in _handshake_calls(self.endpoint):
            future: asyncio.Future[Any] = loop.create_future()
            connection.send(encode(call), future)
            await future

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


_P = TypeVar("_P", bound=asyncio.Protocol)


async def _create(endpoint: Endpoint, factory: Callable[[], _P]) -> _P:
    loop = asyncio.get_running_loop()
    if endpoint.unix_path is not None:
        _, protocol = await loop.create_unix_connection(factory, endpoint.unix_path)
    else:
        context = ssl.create_default_context() if endpoint.tls else None
        _, protocol = await loop.create_connection(factory, endpoint.host, endpoint.port, ssl=context)
    return protocol


def _handshake_calls(endpoint: Endpoint, *, select_db: bool = True) -> list[tuple[Arg, ...]]:
    calls: list[tuple[Arg, ...]] = []
    if endpoint.password is not None:
        user = (endpoint.username,) if endpoint.username else ()
        calls.append(("AUTH", *user, endpoint.password))
    if endpoint.client_name:
        calls.append(("CLIENT", "SETNAME", endpoint.client_name))
    if endpoint.db and select_db:
        calls.append(("SELECT", endpoint.db))
    return calls


class _Replies(asyncio.Protocol):
    """A subscribed connection: every reply and message, in order, into a queue; an error when it breaks."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.replies: asyncio.Queue[Any] = asyncio.Queue()
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        position = 0
        try:
            while position < len(buffer):
                value, position = _parse(buffer, position)
                self.replies.put_nowait(value)
        except _Incomplete:
            pass
        except (RedisConnectionError, ValueError, IndexError) as exc:
            self.replies.put_nowait(RedisConnectionError(f"Redis protocol error: {exc}"))
            if self.transport is not None:
                self.transport.abort()
            return
        del buffer[:position]

    def connection_lost(self, exc: Exception | None) -> None:
        self.replies.put_nowait(RedisConnectionError("Connection to Redis lost"))


class Subscription:
    """What is published to ``channels``, on a connection of its own (a subscribed connection takes no other
    commands). Entered, it is subscribed; ``message()`` waits for the next message. A connection that breaks, or
    that stays silent to a PING after ``idle_check`` seconds without messages, raises ``RedisConnectionError``:
    the caller subscribes again (and should assume it missed messages meanwhile)."""

    def __init__(
        self, endpoint: Endpoint, channels: tuple[str, ...], *, connect_timeout: float = 2.0, idle_check: float = 30.0
    ) -> None:
        self.endpoint = endpoint
        self.channels = channels
        self.connect_timeout = connect_timeout
        self.idle_check = idle_check
        self._protocol: _Replies | None = None

    async def __aenter__(self) -> Subscription:
        try:
            async with asyncio.timeout(self.connect_timeout):
                self._protocol = await _create(self.endpoint, _Replies)
                for call in _handshake_calls(self.endpoint, select_db=False):  # channels are not per database
                    self._send(call)
                    await self._reply()
                self._send(("SUBSCRIBE", *self.channels))
                for _ in self.channels:
                    reply = await self._reply()
                    if not (isinstance(reply, list) and reply[:1] == [b"subscribe"]):
                        raise RedisConnectionError(f"unexpected answer to SUBSCRIBE: {reply!r}")
        except BaseException as exc:
            self._close()
            if isinstance(exc, OSError | TimeoutError):
                raise RedisConnectionError(f"Cannot subscribe on Redis ({type(exc).__name__})") from None
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._close()

    async def message(self) -> bytes:
        """The data of the next message published to one of the channels."""
        while True:
            try:
                async with asyncio.timeout(self.idle_check):
                    reply = await self._reply()
            except TimeoutError:
                # Quiet for a while: make sure the connection is still there (a peer that vanished without a FIN
                # would otherwise leave this subscription waiting forever).
                self._send(("PING",))
                try:
                    async with asyncio.timeout(self.connect_timeout):
                        reply = await self._reply()
                except TimeoutError:
                    self._close()
                    raise RedisConnectionError("Redis did not answer a PING on the subscription") from None
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                data: bytes = reply[2]
                return data

    def _send(self, call: tuple[Arg, ...]) -> None:
        assert self._protocol is not None and self._protocol.transport is not None
        self._protocol.transport.write(encode(call))

    async def _reply(self) -> Any:
        assert self._protocol is not None
        reply = await self._protocol.replies.get()
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
