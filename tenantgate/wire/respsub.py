"""Redis pub/sub: what is published to some channels, on a connection of its own (a subscribed connection takes no
other commands), with a PING when it has been quiet so that a vanished peer is noticed."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from tenantgate.wire.respcodec import Arg, Incomplete, RedisConnectionError, encode, parse
from tenantgate.wire.respendpoint import Endpoint, handshake_calls, open_protocol


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
                value, position = parse(buffer, position)
                self.replies.put_nowait(value)
        except Incomplete:
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
                self._protocol = await open_protocol(self.endpoint, _Replies)
                for call in handshake_calls(self.endpoint, select_db=False):  # channels are not per database
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
