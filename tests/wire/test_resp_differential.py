"""tenantgate's Redis client against redis-py, on the real Redis: for generated commands and values, both clients
get the same replies - bulk strings with CR, LF and any byte, integers to the int64 edges, nil, nested arrays,
status and error replies, large bulk strings - one command at a time and as one loop iteration's pipeline; and
the same messages on a subscription.

redis-py runs with its response callbacks removed, so what is compared is the parsed RESP reply, not redis-py's
conveniences (``SET`` -> True). Where the two represent a reply differently by design, ``_ours`` and ``_theirs``
map both to one form: a status reply is ``str`` here and ``bytes`` in redis-py; an error is raised by both, and
redis-py drops the error code (``ERR``, ``NOSCRIPT``) from the message.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantgate.wire.resp import NoScriptError, RespClient, ResponseError, _Connection, encode
from tests.support.services import own_redis_prefix

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
AWKWARD = [b"", b"\r\n", b"\r", b"\n", b"$-1\r\n", b"*1\r\n:1\r\n", b"-ERR not an error\r\n", b"+OK\r\n", b"\x00\xff"]
VALUES = st.one_of(st.binary(max_size=80), st.text(max_size=40).map(str.encode), st.sampled_from(AWKWARD))
NUMBERS = st.one_of(INT64, st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([0, 1, -1, 1023, 1024]))
SCRIPTS = [
    "return {1, {2, {ARGV[1]}}, 'x', false, {}}",  # nested arrays, nil inside an array, the empty array
    "return redis.error_reply('custom failure')",
    "return redis.status_reply('FINE')",
    "return tonumber(ARGV[1])",
    "return nil",
    "return {ARGV[1], 3.7, -5}",  # a Lua number becomes an integer reply
    "return {tonumber(ARGV[1]) or 0, {-1, tonumber(ARGV[1]) or 0}}",  # integers inside arrays, any size
]
GENERATION = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)


def _bitfield(key: int, numbers: list[int]) -> tuple[Any, ...]:
    """Sets signed 64-bit fields and answers their previous values: an array of exact int64 integers, the shape
    of the limiter's script replies."""
    return ("BITFIELD", key, *(part for i, n in enumerate(numbers) for part in ("SET", "i64", f"#{i}", n)))


def _op(key: st.SearchStrategy[int]) -> st.SearchStrategy[tuple[Any, ...]]:
    """One command on the keys 0-2 (names filled in per client), as a tuple whose ints at K positions are keys."""
    return st.one_of(
        st.tuples(st.just("SET"), key, VALUES),
        st.tuples(st.just("SET"), key, NUMBERS.map(lambda n: str(n).encode())),
        st.tuples(st.just("GET"), key),
        st.tuples(st.just("INCRBY"), key, NUMBERS),
        st.tuples(st.just("DEL"), key),
        st.tuples(st.just("RPUSH"), key, VALUES, VALUES),
        st.tuples(st.just("LRANGE"), key, st.integers(-3, 3), st.integers(-3, 3)),
        st.tuples(st.just("HSET"), key, VALUES, VALUES),
        st.tuples(st.just("HGETALL"), key),
        st.tuples(st.just("MGET"), key, key, key),
        st.tuples(st.just("EXISTS"), key, key),
        st.tuples(st.just("STRLEN"), key),
        st.tuples(st.just("TYPE"), key),
        st.tuples(st.just("GETRANGE"), key, NUMBERS, NUMBERS),
        st.tuples(st.just("ECHO"), VALUES),
        st.tuples(st.just("PING")),
        st.tuples(st.just("EVAL"), st.sampled_from(SCRIPTS), st.just(0), st.one_of(VALUES, NUMBERS)),
        st.tuples(st.just("EVALSHA"), st.just("0" * 40), st.just(0)),  # NOSCRIPT
        st.tuples(st.just("SET"), key),  # wrong number of arguments
        st.builds(_bitfield, key, st.lists(INT64, min_size=1, max_size=6)),
    )


KEY = st.integers(0, 2)
COMMANDS = st.lists(_op(KEY), min_size=1, max_size=8)
_KEYED = {"SET", "GET", "INCRBY", "DEL", "RPUSH", "LRANGE", "HSET", "HGETALL", "MGET", "EXISTS", "STRLEN", "TYPE"}
_KEYED |= {"GETRANGE", "BITFIELD"}


def _bind(op: tuple[Any, ...], space: str) -> tuple[Any, ...]:
    """The command with its key numbers replaced by key names in ``space`` (each client has its own keys)."""
    name = op[0]
    if name not in _KEYED:
        return op
    keys = 3 if name == "MGET" else 2 if name == "EXISTS" else 1
    return (name, *(f"{space}:{k}" for k in op[1 : 1 + keys]), *op[1 + keys :])


def _ours(reply: Any) -> Any:
    if isinstance(reply, BaseException):
        if not isinstance(reply, ResponseError):
            raise reply
        return ("error", type(reply) is NoScriptError, str(reply))
    if isinstance(reply, str):
        return reply.encode()  # a status reply
    if isinstance(reply, list):
        return [_ours(item) for item in reply]
    return reply


def _theirs(reply: Any) -> Any:
    if isinstance(reply, BaseException):
        if not isinstance(reply, redis.ResponseError):
            raise reply
        return ("error", isinstance(reply, redis.exceptions.NoScriptError), str(reply))
    if isinstance(reply, list):
        return [_theirs(item) for item in reply]
    return reply


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, tuple) and isinstance(theirs, tuple):
        (_, our_kind, our_text), (_, their_kind, their_text) = ours, theirs
        return bool(our_kind == their_kind and (our_text == their_text or our_text.endswith(" " + their_text)))
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(_same(a, b) for a, b in zip(ours, theirs, strict=True))
    return bool(type(ours) is type(theirs) and ours == theirs)


class Pair:
    """Our client in its own event loop, redis-py beside it, each with its own keys under one prefix."""

    def __init__(self, url: str, prefix: str) -> None:
        self.runner = asyncio.Runner()
        self.ours = RespClient.from_url(url)
        self.theirs = redis.Redis.from_url(url, protocol=2)  # RESP2, as ours speaks
        self.theirs.response_callbacks = {}  # the raw parsed replies, not redis-py's conveniences
        self.prefix = prefix
        self.run(self.ours.execute("PING"))

    def run(self, coroutine: Any) -> Any:
        return self.runner.run(coroutine)

    def gather(self, *coroutines: Any) -> list[Any]:
        """The coroutines run concurrently, replies or exceptions in their order."""

        async def together() -> list[Any]:
            return await asyncio.gather(*coroutines, return_exceptions=True)

        return self.run(together())

    def clear(self) -> None:
        for space in ("a", "b"):
            self.theirs.delete(*(f"{self.prefix}:{space}:{k}" for k in range(3)))

    def close(self) -> None:
        self.run(self.ours.aclose())
        self.runner.close()
        self.theirs.close()


@pytest.fixture(scope="module")
def pair(redis_url: str) -> Iterator[Pair]:
    with own_redis_prefix(redis_url) as prefix:
        both = Pair(redis_url, prefix)
        yield both
        both.close()


def _their_reply(client: redis.Redis, op: tuple[Any, ...]) -> Any:
    try:
        return client.execute_command(*op)
    except redis.ResponseError as error:
        return error


@GENERATION
@given(commands=COMMANDS)
def test_one_command_at_a_time_gets_the_replies_redis_py_gets(pair: Pair, commands: list[tuple[Any, ...]]) -> None:
    pair.clear()
    for op in commands:
        (ours,) = pair.gather(pair.ours.execute(*_bind(op, f"{pair.prefix}:a")))
        theirs = _their_reply(pair.theirs, _bind(op, f"{pair.prefix}:b"))
        assert _same(_ours(ours), _theirs(theirs)), (op, ours, theirs)


@GENERATION
@given(commands=COMMANDS)
def test_a_loop_iterations_commands_leave_in_one_write_and_match_a_redis_py_pipeline(
    pair: Pair, commands: list[tuple[Any, ...]]
) -> None:
    pair.clear()
    writes = pair.ours.write_count
    ours = pair.gather(*(pair.ours.execute(*_bind(op, f"{pair.prefix}:a")) for op in commands))
    assert pair.ours.write_count == writes + 1
    pipeline = pair.theirs.pipeline(transaction=False)
    for op in commands:
        pipeline.execute_command(*_bind(op, f"{pair.prefix}:b"))
    theirs = pipeline.execute(raise_on_error=False)
    assert len(ours) == len(theirs)
    for op, mine, other in zip(commands, ours, theirs, strict=True):
        assert _same(_ours(mine), _theirs(other)), (op, mine, other)


@pytest.mark.parametrize("size", [0, 1, 2**16 - 1, 2**16 + 1, 2**20, 8 * 2**20 + 3])
def test_large_bulk_strings_cross_between_the_clients_intact(pair: Pair, size: int) -> None:
    value = (os.urandom(size // 2) + b"\r\n" * (size // 4))[:size].ljust(size, b"\n")
    ours_key, theirs_key = f"{pair.prefix}:big:a", f"{pair.prefix}:big:b"
    try:
        assert pair.run(pair.ours.execute("SET", ours_key, value)) == "OK"
        assert pair.theirs.execute_command("GET", ours_key) == value
        pair.theirs.execute_command("SET", theirs_key, value)
        replies = pair.gather(pair.ours.execute("GET", theirs_key), pair.ours.execute("STRLEN", theirs_key))
        assert replies == [value, size]
    finally:
        pair.theirs.delete(ours_key, theirs_key)


async def _raw_reply(url: str, args: tuple[Any, ...]) -> bytes:
    """The bytes Redis answers ``args`` with, read up to a random marker's echo that follows them."""
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    marker = uuid.uuid4().hex.encode()
    end = b"$%d\r\n%s\r\n" % (len(marker), marker)
    writer.write(encode(args) + encode(("ECHO", marker)))
    received = b""
    while not received.endswith(end):
        received += await reader.read(1 << 16)
    writer.close()
    return received[: -len(end)]


@GENERATION
@given(
    value=VALUES,
    script=st.sampled_from(SCRIPTS),
    argument=st.one_of(VALUES, NUMBERS),
    numbers=st.lists(INT64, min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=12),
)
def test_replies_cut_anywhere_parse_as_redis_py_parses_them(
    pair: Pair, redis_url: str, value: bytes, script: str, argument: bytes | int, numbers: list[int], cuts: list[int]
) -> None:
    key, fields = f"{pair.prefix}:cut", f"{pair.prefix}:fields"
    pair.theirs.delete(key, fields)
    pair.theirs.execute_command("RPUSH", key, value, b"second", value)
    pair.theirs.execute_command(*_bitfield(fields, numbers))
    commands = [  # read-only: each runs twice, raw and through redis-py
        ("LRANGE", key, 0, -1),
        ("EVAL", script, 0, argument),
        ("GET", key),
        ("LINDEX", key, 5),
        ("BITFIELD_RO", fields, *(part for i in range(len(numbers)) for part in ("GET", "i64", f"#{i}"))),
    ]
    for args in commands:
        raw = pair.run(_raw_reply(redis_url, args))
        theirs = _their_reply(pair.theirs, args)

        async def parse(data: bytes = raw) -> Any:
            connection = _Connection()
            future = asyncio.get_running_loop().create_future()
            connection.waiting.append(future)
            position = 0
            for size in cuts:
                connection.data_received(data[position : position + size])
                position += size
            connection.data_received(data[position:])
            assert future.done() and not connection.buffer
            return future.exception() or future.result()

        assert _same(_ours(pair.run(parse())), _theirs(theirs)), (args, raw)


@settings(max_examples=15, deadline=None, database=None)
@given(messages=st.lists(VALUES, min_size=1, max_size=6))
def test_a_subscription_receives_what_redis_py_receives(redis_url: str, messages: list[bytes]) -> None:
    async def scenario() -> None:
        with own_redis_prefix(redis_url) as prefix:
            channel, other = f"{prefix}:news", f"{prefix}:other"
            publisher = RespClient.from_url(redis_url)
            theirs = redis.asyncio.Redis.from_url(redis_url, protocol=2)
            listener = theirs.pubsub()
            await listener.subscribe(channel)
            assert (await listener.get_message(timeout=2))["type"] == "subscribe"
            try:
                async with RespClient.from_url(redis_url).subscribe(channel, other) as subscription:
                    for message in messages:
                        assert await publisher.execute("PUBLISH", channel, message) == 2  # both are subscribed
                    received = [await asyncio.wait_for(subscription.message(), 2) for _ in messages]
                    their_messages = [await listener.get_message(timeout=2) for _ in messages]
                    assert received == [m["data"] for m in their_messages if m is not None] == messages
                    assert await publisher.execute("PUBLISH", other, b"second channel") == 1
                    assert await asyncio.wait_for(subscription.message(), 2) == b"second channel"
                # Leaving the block unsubscribed ours (its connection closed); redis-py's is still there.
                assert await publisher.execute("PUBLISH", channel, b"after") == 1
                assert await publisher.execute("PUBSUB", "NUMSUB", channel) == [channel.encode(), 1]
                assert (await listener.get_message(timeout=2))["data"] == b"after"
                await listener.unsubscribe(channel)
                assert (await listener.get_message(timeout=2))["type"] == "unsubscribe"
                assert await publisher.execute("PUBLISH", channel, b"nobody") == 0
            finally:
                await listener.aclose()
                await theirs.aclose()
                await publisher.aclose()

    asyncio.run(scenario())
