"""A direct upload (``POST /v1/files``) of a file exactly at the tenant's room is accepted, whatever its multipart
body adds around the file (boundaries, part headers, a long filename, no Content-Length at all); a byte more is
refused; and what the tenant is charged in storage is the file's bytes, not the request's length.

The gateway holds room by the body's Content-Length before anything is forwarded (files.py), so the body's overhead
is held for a moment too: these tests pin that the hold never turns into a refusal of a file that fits.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import Message

from tenantgate.platform.proxy.files import _file_at_most
from tests.support.gateway import Gateway

FILE_MAX = 5000
STORAGE_MAX = 8000


@pytest.fixture
def gateway(objects_gateway: Callable[..., Gateway]) -> Gateway:
    """One gateway for all of a test's examples (hypothesis reuses the fixture), a tenant per example."""
    return objects_gateway(files_max_bytes=FILE_MAX, files_max_storage_bytes=STORAGE_MAX, files_max_count=100)


def _post_file(gateway: Gateway, key: str, size: int, *, filename: str, chunked: bool) -> httpx.Response:
    boundary = "b" + secrets.token_hex(16)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + b"z" * size + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={boundary}"}

    def pieces() -> Iterator[bytes]:  # no Content-Length: sent chunked, the gateway cannot size it up front
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    content: bytes | Iterator[bytes] = pieces() if chunked else body
    return gateway.http.post(gateway.base_url + "/files", headers=headers, content=content)


def _stored(gateway: Gateway, key: str) -> tuple[int, int]:
    storage = gateway.http.get(gateway.base_url + "/me", headers={"Authorization": f"Bearer {key}"}).json()["storage"]
    return storage["files"], storage["bytes"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kept=st.lists(st.integers(1, FILE_MAX), max_size=2).filter(lambda sizes: sum(sizes) < STORAGE_MAX),
    filename=st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), min_size=1, max_size=200),
    chunked=st.booleans(),
    over=st.booleans(),
)
def test_a_file_exactly_at_the_room_left_is_accepted_and_charged_its_own_bytes(
    gateway: Gateway, kept: list[int], filename: str, chunked: bool, over: bool
) -> None:
    key = gateway.new_key("boundary")["key"]
    for size in kept:
        assert _post_file(gateway, key, size, filename="kept.txt", chunked=False).status_code == 200
    room = min(FILE_MAX, STORAGE_MAX - sum(kept))  # the per-file limit or the storage left, whichever is less
    response = _post_file(gateway, key, room + over, filename=filename + ".txt", chunked=chunked)
    if over:
        assert response.status_code in (400, 413), response.text
        assert _stored(gateway, key) == (len(kept), sum(kept))
        return
    assert response.status_code == 200, (room, len(filename), chunked, response.text)
    assert response.json()["bytes"] == room
    # Charged the file's bytes: the multipart overhead held during the upload is given back.
    assert _stored(gateway, key) == (len(kept) + 1, sum(kept) + room)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.integers(1, FILE_MAX), filenames=st.tuples(*[st.integers(1, 200)] * 2))
def test_two_files_sent_at_once_that_fill_the_room_exactly_are_both_accepted(
    gateway: Gateway, first: int, filenames: tuple[int, int]
) -> None:
    """Each upload's hold is its file's bytes, not its request's: the other's multipart overhead takes no room."""
    key = gateway.new_key("together")["key"]
    second = min(FILE_MAX, STORAGE_MAX - first)
    sizes = (first, second)

    def send(index: int) -> httpx.Response:
        return _post_file(gateway, key, sizes[index], filename="f" * filenames[index], chunked=False)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(send, range(2)))
    assert [a.status_code for a in answers] == [200, 200], [a.text[:200] for a in answers]
    assert _stored(gateway, key) == (2, first + second)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 3000),
    fields_before=st.integers(0, 3),
    field_after=st.booleans(),
    filename=st.integers(1, 300),
    cuts=st.lists(st.integers(1, 400), max_size=12),
)
def test_the_room_held_is_never_less_than_the_file_and_no_more_when_the_file_ends_the_form(
    size: int, fields_before: int, field_after: bool, filename: int, cuts: list[int]
) -> None:
    """Whatever the form around the file and however the body is cut into chunks: less would cut a file that fits;
    more than the file (and the 2 bytes a form may or may not end with) is room a file sent beside it cannot have."""
    boundary = "b" + secrets.token_hex(8)
    fields = [f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nvalue\r\n' for i in range(4)]
    body = "".join(fields[:fields_before]).encode()
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{"n" * filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body += secrets.token_bytes(size) + b"\r\n"
    body += (fields[3] if field_after else "").encode() + f"--{boundary}--\r\n".encode()
    chunks, at = [], 0
    for cut in [*cuts, len(body)]:
        chunks.append(body[at : at + cut])
        at += cut
        if at >= len(body):
            break
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0)

    read, most = asyncio.run(_file_at_most(boundary.encode(), len(body), receive))
    assert most >= size
    if not field_after:  # at most the CRLF a form may end with after its last boundary, which it need not send
        assert most - size <= 2
    assert read == messages[: len(read)]  # everything read is given back to be streamed, in order
