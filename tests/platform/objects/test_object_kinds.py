"""An id used where another kind of object is expected, even the caller's own (its file id on a batch's route, an
upload as a part), gets the 404 of an id that never existed, word for word, and the upstream is never asked."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tenantgate.devupstream import DevUpstream
from tests.conftest import UPSTREAM_KEY
from tests.support.gateway import Gateway
from tests.support.server import ServedApp


class _Recording:
    """The dev upstream, noting every request that reaches it."""

    def __init__(self) -> None:
        self.inner = DevUpstream(api_key=UPSTREAM_KEY, batch_seconds=1.0)
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths.append(f"{scope['method']} {scope['path']}")
        await self.inner(scope, receive, send)


@pytest.fixture(scope="module")
def recording() -> Iterator[tuple[_Recording, str]]:
    upstream = _Recording()
    with ServedApp(upstream, lifespan="off") as served:
        yield upstream, served.url + "/v1"


@dataclass(frozen=True)
class _Call:
    """A route that expects one kind of object, and where in it the id goes."""

    method: str
    path: str
    expects: str
    body: dict[str, Any] | None = None


# ``{id}`` is the id under test; ``{store}`` / ``{upload}`` a vector store / open upload of the caller's own.
_CALLS = [
    _Call("GET", "/v1/files/{id}", "file"),
    _Call("GET", "/v1/files/{id}/content", "file"),
    _Call("DELETE", "/v1/files/{id}", "file"),
    _Call("GET", "/v1/batches/{id}", "batch"),
    _Call("POST", "/v1/batches/{id}/cancel", "batch"),
    _Call(
        "POST",
        "/v1/batches",
        "file",
        {"input_file_id": "{id}", "endpoint": "/v1/responses", "completion_window": "24h"},
    ),
    _Call("GET", "/v1/vector_stores/{id}", "vector_store"),
    _Call("POST", "/v1/vector_stores/{id}/search", "vector_store", {"query": "q"}),
    _Call("GET", "/v1/vector_stores/{store}/files/{id}", "file"),
    _Call("POST", "/v1/vector_stores/{store}/files", "file", {"file_id": "{id}"}),
    _Call("GET", "/v1/vector_stores/{store}/file_batches/{id}", "vector_store_file_batch"),
    _Call("GET", "/v1/chat/completions/{id}", "chat_completion"),
    _Call("GET", "/v1/chat/completions/{id}/messages", "chat_completion"),
    _Call("DELETE", "/v1/chat/completions/{id}", "chat_completion"),
    _Call("GET", "/v1/conversations/{id}", "conversation"),
    _Call("GET", "/v1/conversations/{id}/items", "conversation"),
    _Call("GET", "/v1/responses/{id}", "response"),
    _Call("POST", "/v1/uploads/{id}/cancel", "upload"),
    _Call("POST", "/v1/uploads/{upload}/complete", "upload_part", {"part_ids": ["{id}"]}),
]


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


def _unknown_like(object_id: str) -> str:
    """An id of the same shape that nobody has."""
    prefix, _, rest = object_id.rpartition("_") if "_" in object_id else object_id.partition("-")
    separator = "_" if "_" in object_id else "-"
    return f"{prefix}{separator}{'f' * len(rest)}"


def test_an_own_id_of_another_kind_is_an_unknown_id(
    objects_gateway: Callable[..., Gateway], recording: tuple[_Recording, str]
) -> None:
    upstream, url = recording
    gateway = objects_gateway(upstream_base_url=url)
    key = gateway.new_key("kinds")["key"]
    client = gateway.client(key)
    file_id = client.files.create(file=("a.txt", io.BytesIO(b"apples\n")), purpose="assistants").id
    upload = client.uploads.create(bytes=4, filename="u.txt", mime_type="text/plain", purpose="assistants")
    part_id = client.uploads.parts.create(upload_id=upload.id, data=b"abcd").id
    store_id = client.vector_stores.create(name="kinds").id
    conversation_id = client.conversations.create().id
    own = {
        "file": file_id,
        "upload": upload.id,
        "upload_part": part_id,
        "vector_store": store_id,
        "conversation": conversation_id,
    }
    names = {"store": store_id, "upload": upload.id}
    http = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def answer(call: _Call, object_id: str) -> httpx.Response:
        filled = {**names, "id": object_id}
        body = _fill(call.body, filled) if call.body is not None else None
        return http.request(call.method, _fill(call.path, filled), json=body)

    # Every route against every own id of another kind: a finite set, so all of it rather than a sample.
    for call in _CALLS:
        for kind, object_id in own.items():
            if kind == call.expects:
                continue
            before = len(upstream.paths)
            mine = answer(call, object_id)
            assert upstream.paths[before:] == [], f"{call.method} {call.path} with a {kind} id reached the upstream"
            unknown_id = _unknown_like(object_id)
            unknown = answer(call, unknown_id)
            assert mine.status_code == unknown.status_code == 404, (call, kind, mine.text)
            assert mine.text.replace(object_id, "ID") == unknown.text.replace(unknown_id, "ID")
    # The right kinds still work, and nothing above changed them.
    assert client.files.retrieve(file_id).id == file_id
    assert client.vector_stores.retrieve(store_id).id == store_id
    assert client.conversations.retrieve(conversation_id).id == conversation_id
    done = client.uploads.complete(upload_id=upload.id, part_ids=[part_id])
    assert done.status == "completed"
