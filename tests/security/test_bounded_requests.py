"""Threat T5, unauthenticated resource exhaustion: request heads, slow clients and connection floods are bounded
before any credential is looked at, with OpenAI-shaped answers where an answer is possible."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.gateway import Gateway

LIMITS = {
    "http_max_header_bytes": 16 * 1024,
    "http_max_headers": 50,
    "http_header_timeout_seconds": 0.5,
    "http_body_idle_timeout_seconds": 0.5,
    "http_body_timeout_seconds": 3,
    "http_max_connections": 40,
    "max_admin_body_bytes": 4096,
}


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str) -> Gateway:
    return gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, **LIMITS)


@pytest.fixture
def connect(gateway: Gateway) -> Iterator[Callable[[], socket.socket]]:
    opened: list[socket.socket] = []

    def open_one() -> socket.socket:
        port = int(gateway.url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        opened.append(sock)
        return sock

    yield open_one
    for sock in opened:
        sock.close()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one answer; the server must close the connection after it."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def test_a_head_larger_than_the_limit_is_refused_unread(gateway: Gateway, connect: Callable[[], socket.socket]) -> None:
    sock = connect()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (20 * 1024))
    status, headers, body = read_answer(sock)
    assert status == 431
    assert orjson.loads(body)["error"]["code"] == "headers_too_large"
    assert headers["connection"] == "close"
    # A client that goes on sending (a 64 MiB header) is cut off instead of being read to the end.
    flood = connect()
    with pytest.raises(OSError):
        for _ in range(64):
            flood.sendall(b"a" * (1024 * 1024))
    assert httpx.get(gateway.url + "/healthz").status_code == 200


def test_too_many_headers_are_refused(connect: Callable[[], socket.socket]) -> None:
    sock = connect()
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(60))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert read_answer(sock)[0] == 431


def test_a_head_within_the_limits_is_served(gateway: Gateway) -> None:
    headers = {f"x-h{i}": "v" * 100 for i in range(40)}
    assert httpx.get(gateway.url + "/healthz", headers=headers).status_code == 200


def test_a_head_that_trickles_in_times_out(connect: Callable[[], socket.socket]) -> None:
    sock = connect()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    started = time.monotonic()
    status, _, body = read_answer(sock)
    assert status == 408 and orjson.loads(body)["error"]["code"] == "request_timeout"
    assert time.monotonic() - started < 5
    silent = connect()  # a connection that never sends a byte is closed too
    assert silent.recv(10) == b""


@pytest.mark.parametrize("split", ["after-an-answer", "pipelined"])
def test_a_later_head_on_a_kept_alive_connection_that_trickles_in_times_out_too(
    connect: Callable[[], socket.socket], split: str
) -> None:
    """The head timer is armed only when a read leaves a head incomplete: the second request's head, whether it
    starts in a read of its own or behind a whole first request in the same read, is held to the deadline too."""
    sock = connect()
    whole, partial = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    if split == "pipelined":
        sock.sendall(whole + partial)
    else:
        sock.sendall(whole)
        assert _read_one(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(partial)
    started = time.monotonic()
    data = b""
    while chunk := sock.recv(65536):  # the server closes the connection: not left waiting for the rest of the head
        data += chunk
    assert time.monotonic() - started < 5
    if split == "pipelined":
        # The first request is answered; the head behind it was counted from the end of the first one's body, so
        # it had no byte of its own yet when the deadline came: closed quietly, as an idle connection is.
        assert data.startswith(b"HTTP/1.1 200") and data.count(b"HTTP/1.1 ") == 1
    else:
        assert data.startswith(b"HTTP/1.1 408") and b"request_timeout" in data


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/admin/tenants"])
def test_a_body_that_stops_arriving_gets_408(gateway: Gateway, connect: Callable[[], socket.socket], path: str) -> None:
    key = gateway.new_key("slow")["key"]
    token = key if path.startswith("/v1") else gateway.admin_token
    sock = connect()
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
    )
    status, _, body = read_answer(sock)
    assert status == 408
    assert orjson.loads(body)["error"]["code"] == "request_timeout"


def test_admin_bodies_are_capped(gateway: Gateway) -> None:
    response = gateway.admin("POST", "/admin/tenants", json={"name": "x" * 10_000})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert gateway.admin("POST", "/admin/tenants", json={"name": "fits"}).status_code == 201


def test_connections_beyond_the_cap_are_refused_and_the_rest_served(
    gateway: Gateway, connect: Callable[[], socket.socket]
) -> None:
    idle = [connect() for _ in range(LIMITS["http_max_connections"])]
    for sock in idle:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # slow heads, held open
    extra = connect()
    status, headers, body = read_answer(extra)
    assert status == 503 and headers["retry-after"] == "1"
    assert orjson.loads(body)["error"]["code"] == "too_many_connections"
    for sock in idle:  # the slow ones are shed by the head deadline, and the server answers again
        assert read_answer(sock)[0] == 408
        sock.close()
    assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200


def test_an_idle_kept_alive_connection_lives_as_long_as_keep_alive_says(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    """The head deadline runs from a request's first byte, not between requests: a proxy in front that keeps idle
    connections longer than the head deadline must not find them closed under it."""
    gateway = gateway_factory(
        database_url=sqlite_url,
        upstream_base_url=dev_upstream,
        http_header_timeout_seconds=0.3,
        http_keepalive_timeout_seconds=2,
    )
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_one(sock).startswith(b"HTTP/1.1 200")
            time.sleep(0.8)  # longer than the head deadline, shorter than keep-alive: still open
        time.sleep(1.5)  # now past keep-alive: closed
        assert sock.recv(10) == b""


def _read_one(sock: socket.socket) -> bytes:
    """One answer with a Content-Length, read off a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(60, 400), padding=st.integers(0, 300), big=st.booleans())
def test_pipelined_requests_in_one_read_are_each_held_to_their_own_head_limit(
    connect: Callable[[], socket.socket], count: int, padding: int, big: bool
) -> None:
    """Many small requests sent in one write hold more bytes than one head may: each is served (they were cut off
    once the read passed the limit, 117 of 600 answered). A head over the limit among them is still refused."""
    sock = connect()
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * padding + b"\r\n\r\n"
    last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (20 * 1024) + b"\r\n\r\n"
    closing = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    sock.sendall(one * count + (last if big else closing))
    data = b""
    while chunk := sock.recv(1 << 20):
        data += chunk
    if not big:
        assert data.count(b"HTTP/1.1 200 ") == count + 1 and b"HTTP/1.1 431 " not in data
        return
    # The oversized head is never served: it is refused where it is read, which may be before the requests queued
    # ahead of it are answered (the connection then closes; a client retries those as after any reset).
    served, refused = data.count(b"HTTP/1.1 200 "), data.count(b"HTTP/1.1 431 ")
    assert refused == 1 and served <= count and data.index(b"HTTP/1.1 431 ") > data.rfind(b"HTTP/1.1 200 ")
