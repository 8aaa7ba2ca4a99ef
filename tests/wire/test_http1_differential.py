"""The lean HTTP/1.1 client against aiohttp (the ``TENANTGATE_UPSTREAM_HTTP_CLIENT=aiohttp`` session), over a fault
matrix played by a scripted server: both must give the same status, headers and body, or fail with the same class of
failure at the same point, and leave the server with the same number of connections.

Each case is a list of replies the server plays, one per request, byte for byte (with pauses, hang-ups, resets);
the same script runs once per client against a fresh server. Where the two clients differ on purpose, the case says
so in ``DIFFERENCES`` with the reason, and the test checks that difference instead of hiding it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest

from tenantgate.platform.upstream import aio
from tenantgate.wire import httperrors
from tenantgate.wire.http1 import Http1Client
from tenantgate.wire.httperrors import Timeouts
from tests.support.scripted import read_body
from tests.support.tls import self_signed

After = Literal["keep", "close", "reset", "silence"]


@dataclass
class Reply:
    """What the server does for one request: write ``parts`` (each after its pause), then ``after``."""

    parts: list[tuple[float, bytes]] = field(default_factory=list)
    after: After = "keep"


def raw(data: bytes, after: After = "keep", *, pause: float = 0.0) -> Reply:
    return Reply([(pause, data)], after)


def ok(body: bytes = b'{"ok":true}', *extra: bytes, status: bytes = b"200 OK", after: After = "keep") -> Reply:
    head = b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (status, len(body))
    return raw(head + b"".join(extra) + b"\r\n" + body, after)


def chunked(*pieces: bytes, pause: float = 0.0, end: bytes = b"0\r\n\r\n", after: After = "keep") -> Reply:
    parts = [(0.0, b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")]
    parts += [(pause, b"%x\r\n%s\r\n" % (len(piece), piece)) for piece in pieces]
    return Reply([*parts, (0.0, end)] if end else parts, after)


@dataclass
class Case:
    """``replies`` in the order requests reach the server; ``calls`` requests made by the client (as many as there
    are replies unless said), each ``requests[i]`` or else the last one given."""

    replies: list[Reply]
    requests: list[tuple[str, bytes | None]] = field(default_factory=lambda: [("POST", b"{}")])
    timeouts: Timeouts | None = field(default_factory=lambda: Timeouts(total=5))
    calls: int = 0

    def call(self, number: int) -> tuple[str, bytes | None]:
        return self.requests[min(number, len(self.requests) - 1)]


BIG = bytes(range(256)) * 4096  # 1 MiB: more than the pause threshold and the socket buffers
CASES: dict[str, Case] = {
    "content-length": Case([ok(), ok(b""), ok(BIG)]),
    "chunked": Case([chunked(b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n", pause=0.01)]),
    "chunked with an extension and trailers": Case(
        [raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n")] * 2
    ),
    "body until close": Case([raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", "close")]),
    "keep-alive reuse": Case([ok(b"1"), ok(b"2"), ok(b"3")]),
    "reuse after an error status": Case([ok(b'{"error":"boom"}', status=b"500 Internal Server Error"), ok()]),
    "a body cut short, then a fresh connection": Case(
        [raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", "close"), ok()]
    ),
    "a chunked stream cut short": Case([chunked(b"data: 1\n\n", end=b"", after="close")]),
    "a reset mid-body": Case([raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", "reset")]),
    "hang-up before any answer": Case([Reply([], "close")]),
    "hang-up mid-head": Case([raw(b"HTTP/1.1 200 OK\r\nContent-Le", "close")]),
    "reset before any answer": Case([Reply([], "reset")]),
    "slow head within the timeout": Case(
        [Reply([(0.05, b"HTTP/1.1 200 OK\r\n"), (0.05, b"Content-Length: 2\r\n"), (0.05, b"\r\nok")])]
    ),
    "slow head past the total timeout": Case([raw(ok().parts[0][1], pause=1.0)], timeouts=Timeouts(total=0.3)),
    "silence mid-body past the read timeout": Case(
        [chunked(b"data: 1\n\n", end=b"", after="silence")], timeouts=Timeouts(sock_read=0.3)
    ),
    "100 Continue": Case([raw(b"HTTP/1.1 100 Continue\r\n\r\n" + ok().parts[0][1])] * 2),
    "103 Early Hints with headers, twice": Case(
        [raw(b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n" * 2 + ok().parts[0][1])] * 2
    ),
    "a 1xx alone, then silence": Case(
        [raw(b"HTTP/1.1 100 Continue\r\n\r\n", "silence")], timeouts=Timeouts(total=0.3, sock_read=0.3)
    ),
    "large headers within the limits": Case([ok(b"ok", b"X-Big: " + b"v" * 8000 + b"\r\n")]),
    "many headers within the limits": Case([ok(b"ok", *(b"X-H%d: v\r\n" % i for i in range(120)))]),
    "a header line past 8190 bytes": Case([ok(b"ok", b"X-Big: " + b"v" * 9000 + b"\r\n")]),
    "a header of 70 KB": Case([ok(b"ok", b"X-Big: " + b"v" * 70_000 + b"\r\n")]),
    "more than 128 headers": Case([ok(b"ok", *(b"X-H%d: v\r\n" % i for i in range(130)))]),
    "repeated headers keep their order": Case(
        [ok(b"ok", b"Set-Cookie: a=1\r\n", b"X-A: 1\r\n", b"Set-Cookie: b=2\r\n")]
    ),
    "bytes beyond ASCII in a header value": Case([ok(b"ok", b"X-Utf8: \xc3\xa9\xff\r\n")]),
    "whitespace after a header value": Case([ok(b"ok", b"X-Trailing-Space: v \t\r\n")]),
    "an obs-fold header": Case([ok(b"ok", b"X-Folded: one\r\n two\r\n")]),
    "bare LF line ends": Case([raw(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")]),
    "no reason phrase, odd status": Case([ok(status=b"200"), ok(status=b"599 Whatever")]),
    "not HTTP at all": Case([raw(b"NOT HTTP AT ALL\r\n\r\n", "silence")]),
    "an invalid status code": Case([raw(b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n", "silence")]),
    "a NUL in a header value": Case([ok(b"ok", b"X-A: a\x00b\r\n")]),
    "Content-Length and chunked together": Case(
        [raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")]
    ),
    "two different Content-Lengths": Case([ok(b"ok", b"Content-Length: 3\r\n")]),
    "a bad chunk size after the head": Case(
        [Reply([(0.0, chunked().parts[0][1]), (0.05, b"zz\r\nok\r\n0\r\n\r\n")], "silence")],
        timeouts=Timeouts(total=1),
    ),
    "HEAD with a Content-Length and no body": Case(
        [raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"), ok()], requests=[("HEAD", None), ("POST", b"{}")]
    ),
    "204 and 304 without a body": Case(
        [raw(b"HTTP/1.1 204 No Content\r\n\r\n"), raw(b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"), ok()]
    ),
    "Connection: close is honoured": Case([ok(b"1", b"Connection: close\r\n", after="close"), ok(b"2")]),
    "HTTP/1.0 closes unless kept alive": Case(
        [raw(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n1", "close"), ok(b"2")], requests=[("GET", None)]
    ),
    "a closed connection is not reused": Case([ok(b"1", after="close"), ok(b"2")]),
    # The upstream's keep-alive timeout races the next request: it reads the request and hangs up without an answer.
    "a stale kept-alive connection, idempotent request": Case(
        [ok(b"1"), Reply([], "close"), ok(b"2")], [("GET", None)], calls=2
    ),
    "a stale kept-alive connection, POST": Case([ok(b"1"), Reply([], "close"), ok(b"2")], calls=2),
    "bytes after a complete answer": Case([raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", "silence")]),
    "a large upload": Case([ok()], requests=[("POST", b"x" * 300_000)]),
}

# Where the lean client differs from aiohttp on purpose: the case, and why. The test asserts the difference.
DIFFERENCES = {
    "a stale kept-alive connection, POST": (
        "The lean client sends a request again on a new connection when a kept-alive one turns out closed before any "
        "byte of answer (the upstream's keep-alive timeout raced the request); aiohttp does that only for idempotent "
        "methods and raises ServerDisconnectedError for a POST, which the proxy's retry policy then retries after a "
        "backoff. Same request twice at the upstream either way; the lean client saves the backoff."
    ),
    "a bad chunk size after the head": (
        "A chunk size that is not hexadecimal, arriving after the head: the lean client fails the body at once "
        "(ClientPayloadError); aiohttp's reader is not told and waits for more until its timeout."
    ),
    "whitespace after a header value": (
        "The lean client hands header values over as the upstream sent them; aiohttp strips spaces and tabs after "
        "them (RFC 9110 does not count them as part of the value, so both mean the same). Stripping them would cost "
        "Python work for every header of every answer."
    ),
    "bytes after a complete answer": (
        "The answer was complete (its Content-Length arrived); the lean client delivers it and drops the connection, "
        "aiohttp fails the request while parsing the extra bytes as the next answer's head."
    ),
}


@dataclass
class Played:
    connections: int = 0
    received: list[tuple[str, bytes]] = field(default_factory=list)


async def _play(
    replies: list[Reply], played: Played, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    played.connections += 1
    while replies:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        lines = head.decode("latin-1").split("\r\n")
        fields = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines[1:] if ":" in line}
        body = await read_body(reader, fields)
        played.received.append((lines[0].split(" ")[0], body))
        reply = replies.pop(0)
        for pause, data in reply.parts:
            await asyncio.sleep(pause)
            writer.write(data)
            await writer.drain()
        if reply.after == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        if reply.after == "close":
            return
        if reply.after == "silence":
            await asyncio.sleep(3)
            return


@asynccontextmanager
async def scripted(replies: list[Reply], tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[Played, str]]:
    played, remaining = Played(), list(replies)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _play(remaining, played, reader, writer)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=tls)
    scheme = "https" if tls is not None else "http"
    async with server:
        yield played, f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        server.close()


def _failure(error: BaseException) -> str:
    """The class of failure, whichever client raised it."""
    if isinstance(error, TimeoutError):
        return "timeout"
    names = (
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ClientPayloadError",
        "ClientResponseError",
        "ClientOSError",
    )
    for name in names:
        if any(cls.__name__ == name for cls in type(error).__mro__):
            return name
    return f"other: {type(error).__module__}.{type(error).__name__}"


async def _exchange(
    client: Any, url: str, method: str, body: bytes | None, timeouts: Timeouts | None
) -> tuple[Any, ...]:
    try:
        response = await client.request(method, url + "/v1/x", data=body, timeout=timeouts)
    except (httperrors.ClientError, aiohttp.ClientError, TimeoutError) as error:
        return ("failed at the head", _failure(error))
    received = b""
    try:
        while chunk := await response.content.readany():
            received += chunk
    except (httperrors.ClientError, aiohttp.ClientError, TimeoutError) as error:
        response.close()
        return ("failed in the body", response.status, _failure(error))
    response.release()
    return ("answered", response.status, [(bytes(n), bytes(v)) for n, v in response.raw_headers], received)


Client = Callable[[], Any]


def _clients(tls: ssl.SSLContext | None = None) -> dict[str, Client]:
    def aiohttp_session() -> Any:
        if tls is None:
            return aio.operator_session(10)
        return aio.AiohttpSession(aiohttp.TCPConnector(limit=10, ssl=tls))

    return {"lean": lambda: Http1Client(10, ssl_context=tls), "aiohttp": aiohttp_session}


async def _run(case: Case, make: Client, tls: ssl.SSLContext | None = None) -> tuple[list[tuple[Any, ...]], Played]:
    client = make()
    outcomes = []
    try:
        async with scripted(case.replies, tls) as (played, url):
            for number in range(case.calls or len(case.replies)):
                method, body = case.call(number)
                outcomes.append(await _exchange(client, url, method, body, case.timeouts))
                await asyncio.sleep(0.02)  # lets a hang-up after an answer reach the client first, as in the wild
    finally:
        await client.close()
    return outcomes, played


@pytest.mark.parametrize("name", sorted(set(CASES) - set(DIFFERENCES)))
async def test_the_lean_client_answers_as_aiohttp_does(name: str) -> None:
    case = CASES[name]
    lean, lean_played = await _run(case, _clients()["lean"])
    reference, reference_played = await _run(case, _clients()["aiohttp"])
    assert lean == reference
    assert (lean_played.connections, lean_played.received) == (reference_played.connections, reference_played.received)


async def test_a_stale_kept_alive_post_is_sent_again_by_the_lean_client_only() -> None:
    case = CASES["a stale kept-alive connection, POST"]
    lean, lean_played = await _run(case, _clients()["lean"])
    reference, reference_played = await _run(case, _clients()["aiohttp"])
    assert [outcome[-1] for outcome in lean] == [b"1", b"2"]
    assert reference[1] == ("failed at the head", "ServerDisconnectedError")
    assert lean_played.connections == 2 and reference_played.connections == 1
    assert len(lean_played.received) == 3 and len(reference_played.received) == 2  # the lost one, then again


async def test_bytes_after_a_complete_answer_fail_only_aiohttp() -> None:
    case = CASES["bytes after a complete answer"]
    (lean,), _ = await _run(case, _clients()["lean"])
    (reference,), _ = await _run(case, _clients()["aiohttp"])
    assert lean[0] == "answered" and lean[-1] == b"ok"
    assert reference[0].startswith("failed")


async def test_whitespace_after_a_header_value_is_kept_by_the_lean_client_only() -> None:
    case = CASES["whitespace after a header value"]
    (lean,), _ = await _run(case, _clients()["lean"])
    (reference,), _ = await _run(case, _clients()["aiohttp"])
    assert (b"X-Trailing-Space", b"v \t") in lean[2] and (b"X-Trailing-Space", b"v") in reference[2]
    assert lean[:2] == reference[:2] and lean[3] == reference[3] == b"ok"


async def test_a_bad_chunk_fails_the_lean_clients_body_at_once() -> None:
    case = CASES["a bad chunk size after the head"]
    (lean,), _ = await _run(case, _clients()["lean"])
    (reference,), _ = await _run(case, _clients()["aiohttp"])
    assert lean == ("failed in the body", 200, "ClientPayloadError")
    assert reference == ("failed in the body", 200, "timeout")


async def test_tls_with_a_custom_ca_is_trusted_by_both_and_refused_by_both_without_it(tmp_path: Path) -> None:
    cert_path, server_context = self_signed(tmp_path)
    trusting = ssl.create_default_context(cafile=str(cert_path))
    case = Case([ok(b"over tls"), ok(b"again")])
    results = {name: await _run(case, make, server_context) for name, make in _clients(trusting).items()}
    (lean, lean_played), (reference, reference_played) = results["lean"], results["aiohttp"]
    assert lean == reference and lean[1][-1] == b"again"
    assert lean_played.connections == reference_played.connections == 1
    refusals = {name: await _run(Case([ok()]), make, server_context) for name, make in _clients().items()}
    assert refusals["lean"][0] == refusals["aiohttp"][0] == [("failed at the head", "ClientConnectorError")]
