"""The limiter's lean Redis client: URLs, replies however they are split, errors, auth, lost connections."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tenantgate.wire.resp import (
    Endpoint,
    RedisConnectionError,
    RedisStalled,
    RespClient,
    ResponseError,
    Script,
    Subscription,
    _Connection,
)


def test_urls_name_host_port_db_credentials_and_tls() -> None:
    plain = Endpoint.parse("redis://cache.internal:6380/3")
    assert (plain.host, plain.port, plain.db, plain.tls, plain.password) == ("cache.internal", 6380, 3, False, None)
    secure = Endpoint.parse("rediss://app:p%40ss@redis.example.com")
    assert (secure.tls, secure.username, secure.password, secure.port, secure.db) == (True, "app", "p@ss", 6379, 0)
    assert Endpoint.parse("redis://:only-password@localhost/0").password == "only-password"
    unix = Endpoint.parse("unix:///run/redis.sock?db=2")
    assert (unix.unix_path, unix.db) == ("/run/redis.sock", 2)
    assert Endpoint.parse("redis://localhost?client_name=tenantgate-web").client_name == "tenantgate-web"
    with pytest.raises(ValueError, match="scheme"):
        Endpoint.parse("http://localhost:6379")
    assert "p@ss" not in repr(secure)  # an endpoint in a log line shows no password


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://:hunter2@sentinel-0:26379/mymaster", "Sentinel URLs are not supported"),
        ("sentinel://:hunter2@sentinel-0:26379", "Sentinel URLs are not supported"),
        ("redis+cluster://:hunter2@node-0:6379", "Redis Cluster is not supported"),
        ("redis://:hunter2@cache?ssl_cert_reqs=none&socket_timeout=1", r"option\(s\) socket_timeout, ssl_cert_reqs"),
        ("redis://:hunter2@cache:6379/zero", "database must be a number"),
        ("redis://:hunter2@cache:99999/0", "not a valid Redis URL"),
        ("redis://:hunter2@a:1,b:2/0", "not a valid Redis URL"),
        ("unix://", "needs the socket's path"),
        ("redis://cache?client_name=two%20words", "client_name may not hold spaces"),
        ("memcached://:hunter2@cache", "unsupported Redis URL scheme 'memcached'"),
    ],
)
def test_urls_the_client_cannot_honour_are_refused_with_what_is_not_supported(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as refused:
        Endpoint.parse(url)
    assert "hunter2" not in str(refused.value)


@settings(max_examples=300, deadline=None, database=None)
@given(url=st.one_of(st.text(max_size=50), st.text(max_size=40).map(lambda rest: "redis://" + rest)))
def test_any_url_is_either_understood_or_refused_with_a_value_error(url: str) -> None:
    try:
        endpoint = Endpoint.parse(url)
    except ValueError:
        return
    assert endpoint.db >= 0 and 0 < endpoint.port < 65536


class _Recorder:
    """A connection fed by hand: what a caller would get for given bytes from the server."""

    def __init__(self, replies: int) -> None:
        self.connection = _Connection()
        loop = asyncio.get_running_loop()
        self.futures = [loop.create_future() for _ in range(replies)]
        self.connection.waiting.extend(self.futures)


async def test_replies_split_anywhere_are_reassembled_in_order() -> None:
    wire = b":42\r\n$5\r\nhello\r\n*3\r\n:1\r\n$-1\r\n*1\r\n+OK\r\n-ERR wrong type\r\n$0\r\n\r\n"
    for step in (1, 2, 3, 7, len(wire)):
        recorder = _Recorder(5)
        for start in range(0, len(wire), step):
            recorder.connection.data_received(wire[start : start + step])
        results = [f.result() if f.exception() is None else f.exception() for f in recorder.futures]
        assert results[:3] == [42, b"hello", [1, None, ["OK"]]]
        assert isinstance(results[3], ResponseError) and "wrong type" in str(results[3])
        assert results[4] == b""
        assert not recorder.connection.buffer  # nothing left over


async def test_a_caller_that_stopped_waiting_does_not_shift_the_replies_of_the_others() -> None:
    recorder = _Recorder(3)
    recorder.futures[1].cancel()
    recorder.connection.data_received(b":1\r\n:2\r\n:3\r\n")
    assert (recorder.futures[0].result(), recorder.futures[2].result()) == (1, 3)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RespClient]:
    resp = RespClient.from_url(redis_url)
    yield resp
    await resp.aclose()


async def test_scripts_run_by_sha_and_are_loaded_when_redis_forgot_them(own_redis_url: str, redis_prefix: str) -> None:
    script = Script.of("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    key = f"{redis_prefix}:{{t}}:n"
    client = RespClient.from_url(own_redis_url)
    inspector = Redis.from_url(own_redis_url)
    try:
        await inspector.script_flush()
        results = await asyncio.gather(*(client.evalsha(script, [key], [2]) for _ in range(10)))
        assert sorted(results) == list(range(2, 22, 2))
        assert await inspector.script_exists(script.sha) == [True]
    finally:
        await client.aclose()
        await inspector.aclose()


async def test_error_replies_raise_for_their_caller_only(client: RespClient, redis_prefix: str) -> None:
    key = f"{redis_prefix}:list"
    results = await asyncio.gather(
        client.execute("RPUSH", key, "x"), client.execute("INCR", key), client.execute("DEL", key),
        return_exceptions=True,
    )  # fmt: skip
    assert results[0] == 1 and isinstance(results[1], ResponseError) and results[2] == 1


async def test_database_number_and_credentials_from_the_url(redis_url: str, redis_prefix: str) -> None:
    admin = Redis.from_url(redis_url)
    user, password = f"tgtest-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
    base = redis_url.split("://", 1)[1].split("/", 1)[0]
    key = f"{redis_prefix}:db-check"
    authed = RespClient.from_url(f"redis://{user}:{password}@{base}/5")
    wrong = RespClient.from_url(f"redis://{user}:not-it@{base}/0")
    try:
        assert await authed.execute("SET", key, "in five") == "OK"
        five = Redis.from_url(f"redis://{base}/5")
        assert await five.get(key) == b"in five"
        await five.aclose()
        assert await admin.get(key) is None  # not in database 0
        with pytest.raises(ResponseError):
            await wrong.execute("PING")
    finally:
        await authed.execute("DEL", key)
        await authed.aclose()
        await wrong.aclose()
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()


async def test_a_lost_connection_fails_waiting_calls_and_the_next_call_reconnects(
    client: RespClient, redis_url: str
) -> None:
    assert await client.execute("PING") == "PONG"
    connection_id = await client.execute("CLIENT", "ID")
    blocked = asyncio.ensure_future(client.execute("BLPOP", f"tgtest-never-{uuid.uuid4().hex}", 5))
    await asyncio.sleep(0.05)
    admin = Redis.from_url(redis_url)
    await admin.execute_command("CLIENT", "KILL", "ID", connection_id)  # the server drops our connection
    await admin.aclose()
    with pytest.raises(RedisConnectionError):
        await blocked
    assert await client.execute("PING") == "PONG"


async def test_an_unreachable_server_is_a_connection_error_not_a_hang() -> None:
    unreachable = RespClient.from_url("redis://127.0.0.1:1", connect_timeout=0.5)
    with pytest.raises(RedisConnectionError):
        await unreachable.execute("PING")


async def _serve(handler) -> tuple[asyncio.Server, str]:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"redis://127.0.0.1:{port}"


_INFO_CLUSTER = b"# Cluster\r\ncluster_enabled:0\r\n"
_AS_MASTER = b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n" + b"$%d\r\n%b\r\n" % (len(_INFO_CLUSTER), _INFO_CLUSTER)


async def _answer_as_a_master(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """What a standalone master answers to the check each new connection starts with (ROLE, INFO cluster)."""
    await reader.readuntil(b"cluster\r\n")
    writer.write(_AS_MASTER)
    await writer.drain()


async def test_a_silent_redis_fails_the_waiting_calls_after_the_stall_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer_as_a_master(reader, writer)
        await reader.read(1 << 16)
        await asyncio.sleep(5)
        writer.close()

    server, url = await _serve(silent)
    client = RespClient.from_url(url, stall_timeout=0.1)
    try:
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(client.execute("PING"), client.execute("PING"), return_exceptions=True)
        assert all(isinstance(r, RedisStalled) for r in results)
        assert asyncio.get_running_loop().time() - started < 1.0
    finally:
        await client.aclose()
        server.close()


async def test_a_slow_but_answering_redis_is_not_a_stall() -> None:
    """Answers trickling in (as when many requests queue on one connection) keep every caller waiting."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answer_as_a_master(reader, writer)
        owed = 0
        while owed < 6:
            owed += (await reader.read(1 << 16)).count(b"PING")
        for _ in range(owed):
            await asyncio.sleep(0.06)  # each answer within the stall timeout, all of them well beyond it
            writer.write(b"+PONG\r\n")
            await writer.drain()
        await asyncio.sleep(1)

    server, url = await _serve(trickle)
    client = RespClient.from_url(url, stall_timeout=0.1)
    try:
        assert await asyncio.gather(*(client.execute("PING") for _ in range(6))) == ["PONG"] * 6
    finally:
        await client.aclose()
        server.close()


async def test_a_subscription_gets_what_is_published_and_names_its_connection(
    client: RespClient, redis_url: str, redis_prefix: str
) -> None:
    channel, other = f"{redis_prefix}:news", f"{redis_prefix}:other"
    subscriber = RespClient.from_url(f"{redis_url}?client_name={redis_prefix}")
    async with subscriber.subscribe(channel) as subscription:
        assert await client.execute("PUBLISH", other, b"not for us") == 0
        assert await client.execute("PUBLISH", channel, b"\x00binary\r\n") == 1
        assert await client.execute("PUBLISH", channel, "second") == 1
        assert await asyncio.wait_for(subscription.message(), 2) == b"\x00binary\r\n"
        assert await asyncio.wait_for(subscription.message(), 2) == b"second"
        listing = await client.execute("CLIENT", "LIST")
        assert f"name={redis_prefix} " in listing.decode()
    assert await client.execute("PUBLISH", channel, b"after") == 0  # unsubscribed when the block ended


async def test_a_killed_subscription_raises_instead_of_waiting_forever(
    client: RespClient, redis_url: str, redis_prefix: str
) -> None:
    subscriber = RespClient.from_url(f"{redis_url}?client_name={redis_prefix}")
    with pytest.raises(RedisConnectionError):
        async with subscriber.subscribe(f"{redis_prefix}:news") as subscription:
            waiting = asyncio.ensure_future(subscription.message())
            await asyncio.sleep(0.05)
            listing = (await client.execute("CLIENT", "LIST")).decode().splitlines()
            (ours,) = [line.split()[0].removeprefix("id=") for line in listing if f"name={redis_prefix} " in line]
            assert await client.execute("CLIENT", "KILL", "ID", ours) == 1
            await asyncio.wait_for(waiting, 2)


async def test_a_subscription_that_stops_answering_is_given_up_after_a_ping() -> None:
    """A peer that vanished without closing: quiet past ``idle_check``, then no answer to a PING."""
    pings: list[bytes] = []

    async def confirms_then_goes_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"news\r\n")
        writer.write(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n")
        pings.append(await reader.read(1 << 16))
        await asyncio.sleep(5)
        writer.close()

    server, url = await _serve(confirms_then_goes_silent)
    subscription = Subscription(Endpoint.parse(url), ("news",), connect_timeout=0.2, idle_check=0.1)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(RedisConnectionError, match="PING"):
            async with subscription:
                await subscription.message()
        assert asyncio.get_running_loop().time() - started < 1.5
        assert pings and b"PING" in pings[0]
    finally:
        server.close()
