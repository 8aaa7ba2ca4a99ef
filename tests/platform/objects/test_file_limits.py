"""A tenant's file count and storage limits hold for uploads at once (on two replicas) and for the Uploads API, with
the official SDK as the client: room is held before an upload is forwarded and given back however it ends."""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import openai
import pytest
from sqlalchemy import update

from tenantgate.database import create_engine, create_sessionmaker
from tenantgate.tenants.models import TenantObject
from tests.support.gateway import Gateway


def _me(gateway: Gateway, key: str) -> dict[str, int]:
    response = gateway.http.get(gateway.base_url + "/me", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    storage: dict[str, int] = response.json()["storage"]
    return storage


async def _upload_at_once(clients: list[openai.AsyncOpenAI], count: int, size: int) -> list[str]:
    async def one(index: int) -> str | None:
        try:
            made = await clients[index % len(clients)].files.create(
                file=(f"f{index}.txt", io.BytesIO(b"q" * size)), purpose="assistants"
            )
        except openai.APIStatusError as refused:
            assert refused.status_code in (400, 413), refused
            return None
        return made.id

    return [file_id for file_id in await asyncio.gather(*(one(i) for i in range(count))) if file_id]


def test_parallel_uploads_on_two_replicas_stay_within_the_count(objects_gateway: Callable[..., Gateway]) -> None:
    first = objects_gateway(files_max_count=2, files_max_storage_bytes=100_000)
    second = objects_gateway(files_max_count=2, files_max_storage_bytes=100_000)
    key = first.new_key("parallel")["key"]
    made = asyncio.run(_upload_at_once([first.async_client(key), second.async_client(key)], 8, 400))
    assert len(made) == 2
    assert (_me(first, key)["files"], _me(first, key)["bytes"]) == (2, 800)
    assert sorted(f.id for f in first.client(key).files.list()) == sorted(made)


def test_parallel_uploads_stay_within_the_storage(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway(files_max_count=100, files_max_storage_bytes=1000)
    key = gateway.new_key("parallel-bytes")["key"]
    made = asyncio.run(_upload_at_once([gateway.async_client(key)], 8, 300))
    storage = _me(gateway, key)
    assert 1 <= len(made) == storage["files"] <= 3 and storage["bytes"] == 300 * len(made) <= 1000
    # Every hold was given back: what is left can be filled.
    client = gateway.client(key)
    client.files.create(file=("rest.txt", io.BytesIO(b"r" * (1000 - storage["bytes"]))), purpose="assistants")
    assert _me(gateway, key)["bytes"] == 1000


def test_open_uploads_count_against_the_limits(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway(files_max_count=10, files_max_storage_bytes=1000)
    key = gateway.new_key("uploads")["key"]
    client = gateway.client(key)
    client.files.create(file=("a.txt", io.BytesIO(b"x" * 600)), purpose="assistants")
    first = client.uploads.create(bytes=390, filename="u0.txt", mime_type="text/plain", purpose="assistants")
    with pytest.raises(openai.BadRequestError) as over:
        client.uploads.create(bytes=390, filename="u1.txt", mime_type="text/plain", purpose="assistants")
    assert over.value.code == "object_limit_exceeded" and over.value.param == "bytes"
    with pytest.raises(openai.APIStatusError):  # a direct upload sees the open upload too
        client.files.create(file=("b.txt", io.BytesIO(b"x" * 20)), purpose="assistants")

    client.uploads.cancel(first.id)  # cancelled: its room is free again
    second = client.uploads.create(bytes=390, filename="u2.txt", mime_type="text/plain", purpose="assistants")
    part = client.uploads.parts.create(upload_id=second.id, data=b"y" * 390)
    done = client.uploads.complete(upload_id=second.id, part_ids=[part.id])
    assert done.status == "completed" and done.file is not None
    assert (_me(gateway, key)["files"], _me(gateway, key)["bytes"]) == (2, 990)

    counted = objects_gateway(files_max_count=2, files_max_storage_bytes=100_000)
    with pytest.raises(openai.BadRequestError) as over_count:
        counted.client(key).uploads.create(bytes=1, filename="u3.txt", mime_type="text/plain", purpose="assistants")
    assert over_count.value.code == "object_limit_exceeded" and over_count.value.param == "file"


def test_a_complete_over_a_lowered_limit_is_refused(objects_gateway: Callable[..., Gateway]) -> None:
    roomy = objects_gateway(files_max_count=10, files_max_storage_bytes=1000)
    key = roomy.new_key("lowered")["key"]
    client = roomy.client(key)
    client.files.create(file=("a.txt", io.BytesIO(b"x" * 600)), purpose="assistants")
    upload = client.uploads.create(bytes=390, filename="u.txt", mime_type="text/plain", purpose="assistants")
    part = client.uploads.parts.create(upload_id=upload.id, data=b"y" * 390)

    lowered = objects_gateway(files_max_count=10, files_max_storage_bytes=800).client(key)
    with pytest.raises(openai.BadRequestError) as over:
        lowered.uploads.complete(upload_id=upload.id, part_ids=[part.id])
    assert over.value.code == "object_limit_exceeded"
    assert [f.filename for f in client.files.list()] == ["a.txt"]
    assert client.uploads.complete(upload_id=upload.id, part_ids=[part.id]).status == "completed"  # room at 1000


def test_an_upload_the_client_abandons_gives_its_room_back(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway(files_max_count=10, files_max_storage_bytes=1000)
    key = gateway.new_key("abandon")["key"]
    address = urlsplit(gateway.url)
    head = (
        "POST /v1/files HTTP/1.1\r\nHost: gateway\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: 900\r\n\r\n"
        '--b0undary\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\n\r\n'
    ).encode()
    with socket.create_connection((address.hostname or "127.0.0.1", address.port or 80)) as raw:
        raw.sendall(head + b"z" * 100)  # then gone, holding 900 bytes of room
        time.sleep(0.5)
    client = gateway.client(key)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.files.create(file=("full.txt", io.BytesIO(b"f" * 1000)), purpose="assistants")
            break
        except openai.APIStatusError:
            assert time.monotonic() < deadline, "the abandoned upload's room was never given back"
            time.sleep(0.2)
    assert _me(gateway, key)["bytes"] == 1000


def test_an_upload_indexed_before_its_bytes_were_kept_is_checked_at_complete(
    objects_gateway: Callable[..., Gateway],
) -> None:
    roomy = objects_gateway(files_max_count=10, files_max_storage_bytes=1000)
    key = roomy.new_key("legacy")["key"]
    client = roomy.client(key)
    client.files.create(file=("a.txt", io.BytesIO(b"x" * 600)), purpose="assistants")
    upload = client.uploads.create(bytes=390, filename="u.txt", mime_type="text/plain", purpose="assistants")
    part = client.uploads.parts.create(upload_id=upload.id, data=b"y" * 390)
    asyncio.run(_forget_bytes(roomy.settings.database_url, upload.id))

    lowered = objects_gateway(files_max_count=10, files_max_storage_bytes=800).client(key)
    with pytest.raises(openai.BadRequestError) as over:
        lowered.uploads.complete(upload_id=upload.id, part_ids=[part.id])
    assert over.value.code == "object_limit_exceeded"


async def _forget_bytes(database_url: str, upload_id: str) -> None:
    """The row as an earlier gateway indexed it: the upload's bytes only in its snapshot."""
    engine = create_engine(database_url)
    async with create_sessionmaker(engine)() as session, session.begin():
        await session.execute(update(TenantObject).where(TenantObject.id == upload_id).values(bytes=None))
    await engine.dispose()
