"""The Files and Uploads APIs through the gateway with the official SDK: create, list (the tenant's own index, in
OpenAI's cursor pages), retrieve, download, delete; uploads in parts; per-tenant limits; storage in /v1/me."""

from __future__ import annotations

import io
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from tests.support.gateway import Gateway


def _me(gateway: Gateway, key: str) -> dict[str, object]:
    response = gateway.http.get(gateway.base_url + "/me", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    storage: dict[str, object] = response.json()["storage"]
    return storage


def test_files_through_the_sdk(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    key = gateway.new_key("files")["key"]
    client = gateway.client(key)
    contents = {name: os.urandom(size) for name, size in (("a.jsonl", 300), ("b.txt", 70_000), ("c.jsonl", 5))}
    created = []
    for name, data in contents.items():
        purpose = "batch" if name.endswith(".jsonl") else "user_data"
        created.append(client.files.create(file=(name, io.BytesIO(data)), purpose=purpose))
        time.sleep(1.05)  # distinct created_at seconds: the order below is the upstream's creation order
    assert [f.filename for f in created] == list(contents)
    assert [f.bytes for f in created] == [len(d) for d in contents.values()]

    newest_first = [f.id for f in client.files.list()]
    assert newest_first == [f.id for f in reversed(created)]
    assert [f.id for f in client.files.list(purpose="batch")] == [created[2].id, created[0].id]
    # Pages of one, oldest first: the SDK follows the cursor (after=last_id) to the end.
    pages = client.files.list(limit=1, order="asc")
    assert len(pages.data) == 1 and pages.has_more
    assert [f.id for f in pages] == [f.id for f in created]

    for file, data in zip(created, contents.values(), strict=True):
        assert client.files.retrieve(file.id).bytes == len(data)
        assert client.files.content(file.id).read() == data
    assert _me(gateway, key) == {
        "files": 3,
        "bytes": sum(len(d) for d in contents.values()),
        "max_files": gateway.settings.files_max_count,
        "max_bytes": gateway.settings.files_max_storage_bytes,
        "max_file_bytes": gateway.settings.files_max_bytes,
        "vector_stores": 0,
        "vector_store_bytes": 0,
    }

    deleted = client.files.delete(created[1].id)
    assert deleted.deleted is True
    assert [f.id for f in client.files.list()] == [created[2].id, created[0].id]
    assert _me(gateway, key)["files"] == 2
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created[1].id)


def test_list_parameters_are_checked(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    key = gateway.new_key("lists")["key"]
    headers = {"Authorization": f"Bearer {key}"}
    for path, query, param in (
        ("/files", "limit=0", "limit"),
        ("/files", "limit=10001", "limit"),
        ("/files", "limit=x", "limit"),
        ("/files", "order=sideways", "order"),
        ("/batches", "limit=101", "limit"),
    ):
        response = gateway.http.get(f"{gateway.base_url}{path}?{query}", headers=headers)
        assert response.status_code == 400, (path, query, response.text)
        assert response.json()["error"]["param"] == param
    # An unknown cursor is an empty page, exactly as another tenant's id would be.
    response = gateway.http.get(f"{gateway.base_url}/files?after=file-nobody", headers=headers)
    assert response.json() == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


def test_uploads_in_parts_become_a_listed_file(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    client = gateway.client(gateway.new_key("uploads")["key"])
    data = os.urandom(250_000)
    upload = client.uploads.upload_file_chunked(
        file=data, filename="big.jsonl", bytes=len(data), mime_type="text/jsonl", purpose="batch", part_size=100_000
    )
    assert upload.status == "completed" and upload.file is not None
    assert [f.id for f in client.files.list()] == [upload.file.id]
    assert client.files.content(upload.file.id).read() == data

    pending = client.uploads.create(bytes=10, filename="x.txt", mime_type="text/plain", purpose="user_data")
    assert client.uploads.cancel(pending.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(pending.id, data=b"0123456789")


def test_file_size_count_and_storage_limits(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway(files_max_bytes=1000, files_max_count=2, files_max_storage_bytes=1500)
    client = gateway.client(gateway.new_key("limits")["key"])
    with pytest.raises(openai.APIStatusError) as too_big:
        client.files.create(file=("big.bin", io.BytesIO(os.urandom(100_000))), purpose="user_data")
    assert too_big.value.status_code == 413
    assert client.files.list().data == []

    client.files.create(file=("a.bin", io.BytesIO(os.urandom(900))), purpose="user_data")
    with pytest.raises(openai.APIStatusError) as over_storage:
        client.files.create(file=("b.bin", io.BytesIO(os.urandom(900))), purpose="user_data")
    assert over_storage.value.status_code == 413  # 900 + 900 > 1500, found while streaming
    client.files.create(file=("c.bin", io.BytesIO(os.urandom(500))), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as over_count:
        client.files.create(file=("d.bin", io.BytesIO(b"x")), purpose="user_data")
    assert over_count.value.code == "object_limit_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.uploads.create(bytes=10_000, filename="e.bin", mime_type="text/plain", purpose="user_data")
    assert len(client.files.list().data) == 2


class _Chunks(io.RawIOBase):
    """A file of ``size`` bytes produced as it is read (the test's side holds none of it)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = b"x" * count
        self.left -= count
        return count


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def test_a_large_upload_streams_through_without_being_held(
    objects_gateway: Callable[..., Gateway], traced: None
) -> None:
    """64 MB go from the SDK through the gateway to the dev upstream's disk (all in this process): the most memory
    Python holds at once stays a small fraction of the file (a gateway reading it whole would hold all of it)."""
    gateway = objects_gateway()
    key = gateway.new_key("large")["key"]
    size = 64 * 1024 * 1024
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    with httpx.Client(timeout=120) as http:
        response = http.post(
            gateway.base_url + "/files",
            headers={"Authorization": f"Bearer {key}"},
            data={"purpose": "user_data"},
            files={"file": ("large.bin", io.BufferedReader(_Chunks(size), buffer_size=64 * 1024))},
        )
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == size
    peak = tracemalloc.get_traced_memory()[1] - before
    assert peak < 16 * 1024 * 1024, f"held {peak / 2**20:.1f} MiB at once for a 64 MiB upload"
