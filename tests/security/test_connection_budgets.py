"""Threat T5, one client against a worker's connections: a per-source connection cap and a budget for heads still on
their way, on the gateway's own HTTP protocol (a plain app behind it: these limits act before any application)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tenantgate.platform.http_protocol import HttpLimits, protocol_factory
from tests.support.server import ServedApp


async def _hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _served(limits: HttpLimits) -> ServedApp:
    return ServedApp(_hello, lifespan="off", ws="none", http=protocol_factory(limits))


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def _connect(served: ServedApp, opened: list[socket.socket]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=5)
    opened.append(sock)
    return sock


def _status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data else 0


def _get(served: ServedApp, opened: list[socket.socket]) -> int:
    sock = _connect(served, opened)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return _status(sock)


def test_one_source_cannot_hold_more_than_its_share_of_connections(sockets: list[socket.socket]) -> None:
    # Loopback is exempt when the limits come from settings (a sidecar); here it is an ordinary source.
    with _served(HttpLimits(max_connections_per_source=3, head_timeout=30)) as served:
        idle = [_connect(served, sockets) for _ in range(3)]
        time.sleep(0.2)
        refused = _connect(served, sockets)
        assert _status(refused) == 503  # at once, not after the head deadline
        idle[0].close()
        time.sleep(0.2)
        assert _get(served, sockets) == 200  # a place was given back


def test_heads_on_their_way_share_a_budget_and_whole_heads_never_count(sockets: list[socket.socket]) -> None:
    limits = HttpLimits(max_head_bytes=32 * 1024, max_pending_head_bytes=64 * 1024, head_timeout=30)
    with _served(limits) as served:
        for _ in range(50):  # heads that arrive whole hold nothing between reads
            assert _get(served, sockets) == 200
        trickling = []
        for _ in range(3):
            sock = _connect(served, sockets)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000)
            trickling.append(sock)
            time.sleep(0.1)
        fourth = _connect(served, sockets)
        fourth.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000)
        assert _status(fourth) == 503  # 80 kB of unfinished heads would exceed the 64 kB budget
        assert _get(served, sockets) == 200  # a whole request still gets through
        for sock in trickling:
            sock.close()
        time.sleep(0.2)
        again = _connect(served, sockets)
        again.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000)
        again.sendall(b"\r\n\r\n")
        assert _status(again) == 200  # the budget came back when those connections closed


def test_the_settings_exempt_loopback_and_the_trusted_proxies() -> None:
    from tenantgate.platform.http_protocol import _source
    from tenantgate.settings import Settings

    limits = HttpLimits.from_settings(Settings(env="dev", trusted_proxies="10.0.0.0/8, 192.0.2.7"))
    assert _source(("127.0.0.1", 1), limits.exempt_sources) is None
    assert _source(("::1", 1, 0, 0), limits.exempt_sources) is None
    assert _source(("10.2.3.4", 1), limits.exempt_sources) is None
    assert _source(("192.0.2.7", 1), limits.exempt_sources) is None
    assert _source(("192.0.2.8", 1), limits.exempt_sources) == "192.0.2.8"
    assert _source(("2001:db8::1", 1, 0, 0), limits.exempt_sources) == "2001:db8::/64"
    assert _source(("::ffff:192.0.2.9", 1, 0, 0), limits.exempt_sources) == "192.0.2.9"
    everyone = HttpLimits.from_settings(Settings(env="dev", trusted_proxies="*"))
    assert _source(("198.51.100.1", 1), everyone.exempt_sources) is None
