"""The refusal lane: a key known to be over its RPM is answered by the connection itself, with the very answer the
ASGI path gives, and the connection stays usable (keep-alive, pipelining, bodies dropped, back-pressure)."""

from __future__ import annotations

import json
import math
import re
import socket
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

import httpx
import pytest

from tests.platform.limits.conftest import MESSAGES, tenant_with_key
from tests.support.gateway import Gateway

BODY: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 2}
# Values that differ between any two refusals: the date, the request id and the wait (so the body's length too).
_VARYING = {"date", "x-request-id", "retry-after", "retry-after-ms", "x-ratelimit-reset-requests", "content-length"}


def _over_rpm(gateway: Gateway) -> tuple[str, httpx.Client]:
    """A key with RPM 1 that has used its request (the next one is refused by the store and then known), and a
    client with that key."""
    key = tenant_with_key(gateway, rpm=1)["key"]
    client = httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert client.post("/chat/completions", json=BODY).status_code == 200
    assert client.post("/chat/completions", json=BODY).status_code == 429  # the store's refusal: now known
    return key, client


def _stable(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in response.headers.multi_items() if k not in _VARYING)


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str) -> Gateway:
    return gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, refusal_delay_seconds=0)


def test_the_lane_gives_the_asgi_paths_answer_header_for_header(gateway: Gateway) -> None:
    lane = gateway.runtime.refusal_lane
    assert lane is not None
    _, client = _over_rpm(gateway)
    with closing(client):
        fast = client.post("/chat/completions", json=BODY, headers={"x-request-id": "mine-1"})
        assert lane.answered == 1
        # A query string takes the ASGI path: the same refusal, rendered there.
        slow = client.post("/chat/completions?x=1", json=BODY, headers={"x-request-id": "mine-2"})
        assert lane.answered == 1
    assert fast.status_code == slow.status_code == 429
    assert _stable(fast) == _stable(slow)
    assert {k for k, _ in fast.headers.multi_items()} == {k for k, _ in slow.headers.multi_items()}
    assert fast.headers["x-request-id"] == "mine-1"
    error = fast.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert error["message"].split("Please try again in")[0] == slow.json()["error"]["message"].split("Please")[0]
    assert int(fast.headers["retry-after-ms"]) > 0
    for answer in (fast, slow):  # each one's length is its own body's
        assert int(answer.headers["content-length"]) == len(answer.content)


def test_a_connection_answered_by_the_lane_stays_usable(gateway: Gateway) -> None:
    lane = gateway.runtime.refusal_lane
    assert lane is not None
    _, client = _over_rpm(gateway)
    with closing(client):
        # Bodies of every size are read and dropped; the connection is the same throughout (keep-alive).
        for size in (0, 10, 70_000, 300_000):
            payload = {**BODY, "user": "x" * size}
            assert client.post("/chat/completions", json=payload).status_code == 429
        assert lane.answered == 4
        # Another tenant on the same connection is served as usual.
        other = tenant_with_key(gateway)["key"]
        served = client.post("/chat/completions", json=BODY, headers={"Authorization": f"Bearer {other}"})
        assert served.status_code == 200 and served.json()["choices"]
        # Requests the lane does not answer: not a model-work path, a query string, no body route.
        assert client.get("/models").status_code == 200
        assert client.post("/chat/completions?x=1", json=BODY).status_code == 429
        assert lane.answered == 4


def test_pipelined_requests_are_answered_in_order(gateway: Gateway) -> None:
    lane = gateway.runtime.refusal_lane
    assert lane is not None
    key, client = _over_rpm(gateway)
    client.close()
    other = tenant_with_key(gateway)["key"]
    host, port = gateway.url.removeprefix("http://").split(":")

    def request(api_key: str, request_id: str) -> bytes:
        body = json.dumps(BODY).encode()
        return (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {api_key}\r\n"
            f"x-request-id: {request_id}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode() + body

    # Refused, served, refused: in one write, so the second and third arrive while the first is answered.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request(key, "p1") + request(other, "p2") + request(key, "p3"))
        answers = _read_responses(sock, 3)
    assert [status for status, _ in answers] == [429, 200, 429]
    assert [rid for _, rid in answers] == ["p1", "p2", "p3"]
    assert lane.answered >= 1


def _read_responses(sock: socket.socket, count: int) -> list[tuple[int, str]]:
    """``count`` responses off a kept-alive connection: status and request id."""
    return [(status, headers["x-request-id"]) for status, headers, _ in _read_whole(sock, count)]


def test_back_pressure_holds_the_lanes_answers_and_a_closed_connection_frees_its_place(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(
        database_url=sqlite_url, upstream_base_url=dev_upstream, refusal_delay_seconds=0.3, refusal_delay_after=1
    )
    lane, pacer = gateway.runtime.refusal_lane, gateway.runtime.pacer
    assert lane is not None
    key, client = _over_rpm(gateway)
    with closing(client):
        began = time.monotonic()
        assert client.post("/chat/completions", json=BODY).status_code == 429
        took = time.monotonic() - began
    assert lane.answered == 1 and pacer.delayed == 1
    assert took >= 0.29, took
    # A held refusal whose client leaves: the place it held is given back.
    host, port = gateway.url.removeprefix("http://").split(":")
    body = json.dumps(BODY).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            (
                f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        deadline = time.monotonic() + 5
        while pacer.held == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pacer.held == 1
    deadline = time.monotonic() + 5
    while pacer.held and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pacer.held == 0


def test_refusals_answered_by_the_lane_are_measured_and_metered(gateway: Gateway) -> None:
    lane = gateway.runtime.refusal_lane
    known = gateway.runtime.limiter.known
    assert lane is not None and known is not None
    _, client = _over_rpm(gateway)
    before = known.refused
    with closing(client):
        for _ in range(5):
            assert client.post("/chat/completions", json=BODY).status_code == 429
    assert lane.answered == 5 and known.refused == before + 5
    metrics = httpx.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {gateway.admin_token}"}).text
    refused = [
        line
        for line in metrics.splitlines()
        if line.startswith("http_server_request_duration_seconds_count")
        and 'http_route="/v1/chat/completions"' in line
        and 'http_response_status_code="429"' in line
    ]
    assert refused and float(refused[0].rsplit(" ", 1)[1]) >= 6, refused


def test_a_traced_request_takes_the_asgi_path_so_its_span_exists(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    gateway = gateway_factory(
        database_url=sqlite_url,
        upstream_base_url=dev_upstream,
        refusal_delay_seconds=0,
        tracing_enabled=True,
        otel_traces_exporter="none",  # nothing to export to: no retries at shutdown
    )
    lane = gateway.runtime.refusal_lane
    assert lane is not None
    _, client = _over_rpm(gateway)
    traceparent = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    with closing(client):
        assert client.post("/chat/completions", json=BODY, headers={"traceparent": traceparent}).status_code == 429
        assert lane.answered == 0
        assert client.post("/chat/completions", json=BODY).status_code == 429
        assert lane.answered == 1


def _request(api_key: str, request_id: str | None = None) -> bytes:
    body = json.dumps(BODY).encode()
    rid = f"x-request-id: {request_id}\r\n" if request_id else ""
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {api_key}\r\n{rid}"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


def _read_whole(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` responses: status, headers (lower-cased names; each name once) and body."""
    data = b""
    answers: list[tuple[int, dict[str, str], bytes]] = []
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(answers)} answers"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        pairs = [line.split(": ", 1) for line in lines[1:]]
        headers = {name.lower(): value for name, value in pairs}
        assert len(headers) == len(pairs), lines  # no header twice
        length = int(headers["content-length"])
        while len(data) < length:
            data += sock.recv(65536)
        answers.append((int(lines[0].split()[1]), headers, data[:length]))
        data = data[length:]
    return answers


def test_refusals_in_the_same_millisecond_each_get_a_whole_answer_and_their_own_request_id(gateway: Gateway) -> None:
    """A flood's refusals come several a millisecond and share their rendered bytes: every one still has its own
    request id (more of them than one read of the random source gives), the length of its own body, and a wait that
    its headers and its message say alike."""
    lane = gateway.runtime.refusal_lane
    assert lane is not None
    key, client = _over_rpm(gateway)
    client.close()
    host, port = gateway.url.removeprefix("http://").split(":")
    count, at_once = 600, 100  # 100 requests in a write: ~25 KiB, within one read's head limit
    answers = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for sent in range(0, count, at_once):
            requests = [_request(key, "mine" if sent + i == count - 1 else None) for i in range(at_once)]
            sock.sendall(b"".join(requests))
            answers += _read_whole(sock, at_once)
    assert lane.answered == count
    ids = [headers["x-request-id"] for _, headers, _ in answers]
    assert ids[-1] == "mine"
    assert len(set(ids)) == count and all(re.fullmatch("req_[0-9a-f]{32}", rid) for rid in ids[:-1])
    waits = []
    for status, headers, body in answers:
        assert status == 429
        error = json.loads(body)["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
        wait_ms = int(headers["retry-after-ms"])
        assert int(headers["retry-after"]) == math.ceil(wait_ms / 1000)
        assert error["message"].endswith(f"Please try again in {headers['x-ratelimit-reset-requests']}.")
        assert headers["x-ratelimit-limit-requests"] == "1" and headers["x-ratelimit-remaining-requests"] == "0"
        waits.append(wait_ms)
    assert waits == sorted(waits, reverse=True)  # the window's end comes closer, never moves away


def test_a_connection_idle_after_the_lanes_answers_is_closed_after_the_keep_alive_timeout(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    """Answers of the lane keep a connection alive as the application's do: one refused now and then for longer
    than the keep-alive timeout stays open, also across an answer of the application; once idle for the timeout
    it is closed."""
    gateway = gateway_factory(
        database_url=sqlite_url,
        upstream_base_url=dev_upstream,
        refusal_delay_seconds=0,
        http_keepalive_timeout_seconds=1,
    )
    lane = gateway.runtime.refusal_lane
    assert lane is not None
    key, client = _over_rpm(gateway)
    client.close()
    other = tenant_with_key(gateway)["key"]
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        statuses, dates = [], []
        began = time.monotonic()
        for sent in range(10):  # 2.7 s, each request 0.3 s after the last answer
            sock.sendall(_request(other if sent == 5 else key))
            status, headers, _ = _read_whole(sock, 1)[0]
            statuses.append(status)
            dates.append(headers["date"])
            time.sleep(0.3)
        assert statuses == [429] * 5 + [200] + [429] * 4
        assert dates[0] != dates[-1]  # the lane's answers carry the server's date of the moment, not one kept
        assert time.monotonic() - began > 2.5
        idle = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server
        assert 0.9 <= time.monotonic() - idle + 0.3 <= 3  # since the last answer
    assert lane.answered == 9
