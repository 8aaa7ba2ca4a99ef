"""Clients hanging up mid-stream leave nothing behind: no tasks, no upstream connections, no held slots, no lost usage.

Twenty streams from a slow upstream (50 ms per token) are opened at once on raw sockets, read until the first
event, then dropped. Within a few seconds the gateway's event loop has no more tasks than before, the upstream pool
holds no more connections than before (and none in use), every concurrency slot is free, and each dropped stream
has its usage event, flagged as estimated and as a client disconnect.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import psutil

from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush

STREAMS = 20
MESSAGES = [{"role": "user", "content": "Tell me a long story about the sea, with many details. " * 4}]


def _tasks(gateway: Gateway) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(count(), gateway.loop).result(5)


def _pool(gateway: Gateway) -> tuple[int, int]:
    """(idle pooled connections, connections in use) of the client to the upstreams."""

    async def read() -> tuple[int, int]:
        pool = gateway.runtime.http.session
        return pool.idle_connections, pool.open_connections - pool.idle_connections

    return asyncio.run_coroutine_threadsafe(read(), gateway.loop).result(5)


def _sockets_to(port: int) -> int:
    """Open TCP connections of this process (gateway and upstream run in it) towards the upstream's port."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def _in_flight(gateway: Gateway, key: str) -> int:
    me = httpx.get(gateway.base_url + "/me", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    return int(me["limits"]["key"]["concurrent_requests"]["in_flight"])


def _eventually(read: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    value = read()
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def _open_stream(gateway: Gateway, key: str) -> socket.socket:
    target = urlsplit(gateway.url)
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "max_tokens": 400})
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {target.netloc}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock = socket.create_connection((target.hostname, target.port), timeout=10)
    sock.sendall(head.encode() + body)
    return sock


def _read_first_token(sock: socket.socket) -> bytes:
    """Read until the first content delta arrived (the role event comes before it), so output was delivered."""
    received = b""
    while b'"delta":{"content":"' not in received:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before the first event: {received!r}"
        received += chunk
    return received


def test_dropped_streams_leave_no_tasks_connections_slots_or_missing_usage(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, slow_dev_upstream: str
) -> None:
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=slow_dev_upstream)
    upstream_port = urlsplit(slow_dev_upstream).port
    assert upstream_port is not None
    tenant = gateway.create_tenant("hangups")
    key = gateway.create_key(tenant["id"], max_concurrency=STREAMS)
    # Warm up: one full stream, so the pool and the loop are in their steady state.
    with httpx.stream(
        "POST",
        gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key['key']}"},
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "max_tokens": 3},
        timeout=30,
    ) as warm:
        assert warm.status_code == 200 and b"[DONE]" in warm.read()
    time.sleep(0.3)
    base_tasks, base_pool, base_sockets = _tasks(gateway), _pool(gateway), _sockets_to(upstream_port)
    assert base_pool[1] == 0

    sockets = [_open_stream(gateway, key["key"]) for _ in range(STREAMS)]
    for sock in sockets:
        assert _read_first_token(sock).startswith(b"HTTP/1.1 200")
    # All twenty are mid-stream: twenty upstream connections in use and twenty slots held.
    assert _pool(gateway)[1] == STREAMS
    assert _in_flight(gateway, key["key"]) == STREAMS
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
        sock.close()

    assert _eventually(lambda: _in_flight(gateway, key["key"]), lambda n: n == 0) == 0
    idle, in_use = _eventually(lambda: _pool(gateway), lambda p: p[1] == 0 and p[0] <= base_pool[0])
    assert in_use == 0 and idle <= base_pool[0]
    assert _eventually(lambda: _sockets_to(upstream_port), lambda n: n <= base_sockets) <= base_sockets
    assert _eventually(lambda: _tasks(gateway), lambda n: n <= base_tasks) <= base_tasks

    flush(gateway)
    events = [e for e in all_events(gateway, tenant_id=tenant["id"]) if e["stream"]]
    dropped = [e for e in events if e["client_disconnected"]]
    assert len(events) == STREAMS + 1 and len(dropped) == STREAMS
    assert all(e["usage_source"] == "estimated" and e["output_tokens"] >= 1 for e in dropped)
    assert all(e["input_tokens"] == dropped[0]["input_tokens"] > 0 for e in dropped)
