"""The gateway's HTTP/1.1 client to the operator's upstreams, against scripted raw-socket servers.

End-to-end behaviour (streams, retries, failover, audio, uploads, disconnects) is covered through the proxy by the
rest of the suite; these pin the wire-level cases a well-behaved dev upstream never produces.
"""

from __future__ import annotations

import asyncio
import gc
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tenantgate.wire import httperrors
from tenantgate.wire.http1 import Http1Client
from tests.support.scripted import read_body
from tests.support.tls import self_signed

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
JSON_ANSWER = b'{"ok":true}'


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body) as received

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        fields = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines[1:] if ":" in line}
        body = await read_body(reader, fields)
        self.requests.append((head, body))
        return head, body


@asynccontextmanager
async def serve(
    handler: Callable[[Server, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[Server, str]]:
    state = Server()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        state.open += 1
        state.most_open = max(state.most_open, state.open)
        try:
            await handler(state, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            state.open -= 1
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context is not None else "http"
    async with server:
        yield state, f"{scheme}://127.0.0.1:{port}"


def answer(body: bytes = JSON_ANSWER, *, content_type: bytes = b"application/json") -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (content_type, len(body))
    return head + b"\r\n" + body


async def keep_answering(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await state.read_request(reader) is not None:
        writer.write(answer())
        await writer.drain()


def replies(raw: bytes, *, then_wait: float = 0.0) -> Callable[..., Awaitable[None]]:
    """A handler that reads one request, sends ``raw`` as it is, waits ``then_wait`` seconds and hangs up."""

    async def handler(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await state.read_request(reader)
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(then_wait)

    return handler


@asynccontextmanager
async def pool_of(limit: int, **options: Any) -> AsyncIterator[Http1Client]:
    pool = Http1Client(limit, **options)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def client() -> AsyncIterator[Http1Client]:
    async with pool_of(100) as pool:
        yield pool


async def post(pool: Http1Client, url: str) -> bytes:
    """One request, its answer read whole and released."""
    response = await pool.request("POST", url + "/", data=b"{}")
    try:
        return await response.read()
    finally:
        response.release()


async def test_requests_reuse_one_kept_alive_connection_and_send_what_they_were_given(client: Http1Client) -> None:
    async with serve(keep_answering) as (state, url):
        for n in range(3):
            response = await client.request(
                "POST", url + "/v1/chat/completions?x=1", data=b'{"n":%d}' % n, headers=[("Authorization", "Bearer k")]
            )
            assert (response.status, await response.read()) == (200, JSON_ANSWER)
            assert response.content_type == "application/json"
            assert response.headers["content-length"] == str(len(JSON_ANSWER))
            response.release()
    assert state.connections == 1
    head, body = state.requests[2]
    assert head.startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nAuthorization: Bearer k\r\n" in head and b"\r\nContent-Length: 7\r\n" in head
    assert body == b'{"n":2}'


async def test_chunked_and_read_until_close_answers_arrive_whole(client: Http1Client) -> None:
    async def chunked(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await state.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for event in (b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await state.read_request(reader)  # kept alive

    until_close = replies(b"HTTP/1.1 200 OK\r\n\r\nno length, ends with the connection")

    async with serve(chunked) as (_, url):
        response = await client.request("GET", url + "/stream")
        received = []
        while chunk := await response.content.readany():
            received.append(chunk)
        assert b"".join(received) == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
        assert response.content_type == "text/event-stream"
        response.release()
        assert client.idle_connections == 1
    async with serve(until_close) as (_, url):
        response = await client.request("GET", url + "/")
        assert await response.read() == b"no length, ends with the connection"
        assert response.content_type == "application/octet-stream"  # no Content-Type: aiohttp's answer too
        response.release()


async def test_a_kept_alive_connection_the_upstream_closed_is_replaced_without_an_error(client: Http1Client) -> None:
    async def one_per_connection(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await state.read_request(reader)
        writer.write(answer())  # says nothing about closing...
        await writer.drain()
        await state.read_request(reader)  # ...but hangs up on the next request: its keep-alive timeout just ran out

    async with serve(one_per_connection) as (state, url):
        for _ in range(3):
            response = await client.request("POST", url + "/", data=b"{}")
            assert await response.read() == JSON_ANSWER
            response.release()
    # Requests 2 and 3 were each sent on the previous connection first, then again on a new one.
    assert state.connections == 3 and len(state.requests) == 5


async def test_broken_answers_raise_upstream_error_types(client: Http1Client) -> None:
    hang_up_mid_body = replies(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")

    async def hang_up_before_answering(
        state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await state.read_request(reader)

    garbage = replies(b"NOT HTTP AT ALL\r\n\r\n", then_wait=1)

    async with serve(hang_up_mid_body) as (_, url):
        response = await client.request("POST", url + "/", data=b"{}")
        with pytest.raises(httperrors.ClientPayloadError):
            await response.read()
        response.release()
    async with serve(hang_up_before_answering) as (state, url):
        with pytest.raises(httperrors.ServerDisconnectedError):
            await client.request("POST", url + "/", data=b"{}")
        assert len(state.requests) == 1  # a fresh connection: not silently sent twice
    async with serve(garbage) as (_, url):
        with pytest.raises(httperrors.ClientError):
            await client.request("POST", url + "/", data=b"{}")
    assert client.open_connections == 0


async def test_refused_connection_is_a_connector_error(client: Http1Client) -> None:
    async with serve(keep_answering) as (_, url):
        pass  # closed: nothing listens on the port any more
    with pytest.raises(httperrors.ClientConnectorError) as refused:
        await client.request("GET", url + "/")
    assert isinstance(refused.value.os_error, ConnectionRefusedError)
    assert url.removeprefix("http://") in str(refused.value)


async def test_total_and_read_timeouts(client: Http1Client) -> None:
    slow_body = replies(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", then_wait=5)

    async with serve(slow_body) as (_, url):
        response = await client.request("GET", url + "/", timeout=httperrors.Timeouts(total=0.3))
        assert response.status == 200  # the head came in time; the body did not
        with pytest.raises(TimeoutError):
            await response.read()
        response.release()
        response = await client.request("GET", url + "/", timeout=httperrors.Timeouts(total=None, sock_read=0.2))
        assert await response.content.readany() == b"ok"
        with pytest.raises(TimeoutError):
            await response.content.readany()
        response.release()
    assert client.open_connections == 0


async def test_a_header_with_a_newline_is_refused_before_sending(client: Http1Client) -> None:
    async with serve(keep_answering) as (state, url):
        with pytest.raises(ValueError):
            await client.request("POST", url + "/", data=b"{}", headers=[("X-Evil", "a\r\nInjected: yes")])
    assert state.requests == []


async def test_streamed_upload_is_sent_chunked_and_arrives_whole(client: Http1Client) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for n in range(50):
            yield b"part %d;" % n * 1000

    async with serve(keep_answering) as (state, url):
        response = await client.request("POST", url + "/v1/audio/transcriptions", data=parts())
        assert await response.read() == JSON_ANSWER
        response.release()
    head, body = state.requests[0]
    assert b"\r\nTransfer-Encoding: chunked\r\n" in head
    assert body == b"".join(b"part %d;" % n * 1000 for n in range(50))


async def test_an_upload_the_upstream_answered_early_is_cut_short_and_its_connection_not_reused(
    client: Http1Client,
) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 1000
            await asyncio.sleep(0.02)

    async def refuse_at_once(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer(b'{"error":"too large"}'))  # answers before the body arrived, as a 413 would
        await writer.drain()
        await reader.read()

    async with serve(refuse_at_once) as (_, url):
        response = await client.request("POST", url + "/v1/audio/transcriptions", data=parts())
        assert await response.read() == b'{"error":"too large"}'
        response.release()
        assert client.open_connections == 0  # the request on it never ended: it cannot carry another


async def test_an_interim_100_continue_is_skipped(client: Http1Client) -> None:
    async def interim(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await state.read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the real answer comes later: the interim one alone must not end the wait
        writer.write(answer())
        await writer.drain()
        await state.read_request(reader)

    async with serve(interim) as (_, url):
        response = await client.request("POST", url + "/", data=b"{}")
        assert (response.status, await response.read()) == (200, JSON_ANSWER)
        assert response.headers["content-type"] == "application/json"
        response.release()
        assert client.idle_connections == 1


async def test_a_reader_that_does_not_read_pauses_the_upstream(client: Http1Client) -> None:
    big = bytes(range(256)) * (128 * 1024)  # 32 MiB: more than the kernel's socket buffers hold
    drained_early: list[bool] = []

    async def large(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await state.read_request(reader)
        writer.write(answer(big, content_type=b"audio/mpeg"))
        try:
            await asyncio.wait_for(writer.drain(), 0.5)
            drained_early.append(True)
        except TimeoutError:
            drained_early.append(False)  # the gateway stopped reading: the upstream waits, memory stays flat
        await writer.drain()
        await state.read_request(reader)

    async with serve(large) as (_, url):
        response = await client.request("POST", url + "/v1/audio/speech", data=b"{}")
        received = bytearray(await response.content.readany())
        await asyncio.sleep(0.8)  # a slow client: nothing read for a while
        while chunk := await response.content.readany():
            received += chunk
        assert bytes(received) == big
        response.release()
        assert client.idle_connections == 1
    assert drained_early == [False]


async def test_the_pool_limit_caps_open_connections() -> None:
    async def slow(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await state.read_request(reader) is not None:
            await asyncio.sleep(0.05)
            writer.write(answer())
            await writer.drain()

    async with pool_of(2) as pool, serve(slow) as (state, url):
        assert await asyncio.gather(*(post(pool, url) for _ in range(6))) == [JSON_ANSWER] * 6
    assert state.most_open == 2


async def test_a_waiter_that_leaves_passes_its_free_slot_on() -> None:
    async with pool_of(1) as pool, serve(keep_answering) as (_, url):
        holder = await pool.request("POST", url + "/", data=b"{}")  # the only connection the pool may open
        leaving, staying = asyncio.create_task(post(pool, url)), asyncio.create_task(post(pool, url))
        await asyncio.sleep(0.05)  # both wait for a slot
        await holder.read()
        holder.release()  # wakes the first waiter...
        leaving.cancel()  # ...which is cancelled before it runs
        assert await asyncio.wait_for(staying, 2) == JSON_ANSWER
        with pytest.raises(asyncio.CancelledError):
            await leaving


async def test_a_full_pool_closes_an_idle_connection_to_another_upstream() -> None:
    first_server, second_server = serve(keep_answering), serve(keep_answering)
    async with pool_of(1) as pool, first_server as (first, first_url), second_server as (_, second_url):
        assert await post(pool, first_url) == JSON_ANSWER  # kept alive, idle: the pool is full
        assert await post(pool, second_url) == JSON_ANSWER
        assert pool.open_connections == 1
        await asyncio.sleep(0.05)
        assert first.open == 0  # the first upstream's idle connection made room


async def test_idle_connections_are_closed_after_the_keepalive_timeout() -> None:
    async with pool_of(10, keepalive_timeout=0.1) as pool, serve(keep_answering) as (state, url):
        assert await post(pool, url) == JSON_ANSWER
        assert pool.idle_connections == 1
        await asyncio.sleep(0.4)
        assert (pool.idle_connections, pool.open_connections, state.open) == (0, 0, 0)


async def test_an_answer_dropped_without_release_frees_its_connection(client: Http1Client) -> None:
    async def stream_forever(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await state.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.read(), 5)  # returns when the gateway hangs up

    async with serve(stream_forever) as (state, url):
        response = await client.request("POST", url + "/v1/chat/completions", data=b"{}")
        assert response.status == 200 and client.open_connections == 1
        del response  # a caller that forgot release() and close(), as aiohttp would forgive
        gc.collect()
        assert client.open_connections == 0
        await asyncio.sleep(0.05)
        assert state.open == 0  # the upstream saw the connection close


async def test_https_verifies_the_certificate(tmp_path: Path) -> None:
    cert_path, server_context = self_signed(tmp_path)
    trusting = ssl.create_default_context(cafile=str(cert_path))
    async with serve(keep_answering, ssl_context=server_context) as (_, url):
        async with pool_of(10, ssl_context=trusting) as pool:
            assert await post(pool, url) == JSON_ANSWER
        async with pool_of(10) as default:  # the system's CAs: a self-signed certificate is refused
            with pytest.raises(httperrors.ClientConnectorError):
                await default.request("POST", url + "/", data=b"{}")
