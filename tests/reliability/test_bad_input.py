"""Malformed proxy input gets a clear OpenAI-shaped 4xx, never a 500 or a stack trace."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.support.gateway import Gateway


@pytest.fixture
def gateway(gateway_factory, sqlite_url: str, dev_upstream: str) -> Gateway:
    return gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, max_request_body_bytes=64 * 1024)


@pytest.fixture
def auth(gateway: Gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {gateway.new_key()['key']}", "Content-Type": "application/json"}


def _read_response(conn: socket.socket) -> bytes:
    """One whole HTTP response (head and Content-Length body) from a raw socket."""
    conn.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def _assert_openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    return dict(error)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "could not parse the JSON body"),
        (b'{"model": "gpt-4o-mini", "messages": [}', "could not parse the JSON body"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b'"just a string"', "must be a JSON object"),
        (b"", "could not parse the JSON body"),
        (b'{"model": "gpt-4o-mini", "x": "\xff\xfe"}', "could not parse the JSON body"),
        (b"[" * 5000 + b"]" * 5000, "could not parse the JSON body"),
    ],
)
def test_malformed_bodies_are_400(gateway: Gateway, auth: dict[str, str], body: bytes, needle: str) -> None:
    response = httpx.post(gateway.base_url + "/chat/completions", content=body, headers=auth)
    assert needle in str(_assert_openai_error(response, 400)["message"])


@pytest.mark.parametrize("model", [None, 123, "", ["gpt-4o-mini"], {"name": "x"}])
def test_missing_or_wrongly_typed_model_is_400(gateway: Gateway, auth: dict[str, str], model: object) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    if model is not None:
        body["model"] = model  # type: ignore[assignment]
    response = httpx.post(gateway.base_url + "/chat/completions", json=body, headers=auth)
    assert _assert_openai_error(response, 400)["param"] == "model"


def test_deeply_nested_valid_json_is_not_a_500(gateway: Gateway, auth: dict[str, str]) -> None:
    nested = b'{"a":' * 200 + b"1" + b"}" * 200
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "metadata": ' + nested + b"}"
    response = httpx.post(gateway.base_url + "/chat/completions", content=body, headers=auth)
    assert response.status_code < 500


def test_declared_oversized_body_is_413_before_it_is_read(gateway: Gateway, auth: dict[str, str]) -> None:
    with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]))) as conn:
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: {auth['Authorization']}\r\nContent-Length: 100000000\r\n\r\n".encode()
            + b'{"model":'
        )
        reply = _read_response(conn)
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"request_too_large" in reply


def test_streamed_oversized_body_is_413(gateway: Gateway, auth: dict[str, str]) -> None:
    def chunks():  # no Content-Length: chunked transfer
        yield b'{"model": "gpt-4o-mini", "padding": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    response = httpx.post(gateway.base_url + "/chat/completions", content=chunks(), headers=auth)
    assert _assert_openai_error(response, 413)["code"] == "request_too_large"


def test_invalid_content_length_is_400(gateway: Gateway, auth: dict[str, str]) -> None:
    with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]))) as conn:
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: {auth['Authorization']}\r\nContent-Length: abc\r\n\r\n".encode()
        )
        reply = conn.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize(
    "raw_header",
    [b"X-Evil: a\rb", b"X-Big: " + b"a" * 200_000, b"Bad Header Name: x"],
)
def test_malformed_or_huge_headers_are_refused_with_4xx(gateway: Gateway, raw_header: bytes) -> None:
    with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]))) as conn:
        conn.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + raw_header + b"\r\n\r\n")
        conn.settimeout(5)
        try:
            reply = conn.recv(65536)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    # The HTTP server refuses these before the app runs: a 4xx or a closed connection, never a 5xx.
    assert reply == b"" or reply.split(b" ", 2)[1].startswith(b"4")
