"""Threats T2 and T3 for files, uploads and batches, with two tenants on real Postgres and Redis: tenant B holding
every id of tenant A's (files, a batch's input and output files, an upload and its part, batches running and
ended) gets the 404 of an unknown id on every route and in every body field that names one, nothing of it reaches
the upstream, A's objects are untouched; lists never show another tenant's object; no answer to B ever carries one
of A's ids beyond the id B itself sent; and an upstream answering with another tenant's id makes nobody its owner.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send

from tenantgate import database
from tenantgate.devupstream import DevUpstream
from tenantgate.platform.app import create_app
from tenantgate.platform.serving import uvicorn_options
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEY, _create_pg_database, make_settings
from tests.platform.objects.batching import create, line, two_model_lines, upload_input, wait_ended
from tests.support.gateway import Gateway
from tests.support.scripted import ScriptedUpstream, json_answer
from tests.support.server import ServedApp
from tests.support.services import own_redis_prefix


class CountingUpstream:
    """A dev upstream (batches done in half a second) remembering every request that reached it."""

    def __init__(self) -> None:
        self.inner = DevUpstream(api_key=UPSTREAM_KEY, batch_seconds=0.5)
        self.requests: list[str] = []
        self.from_b: list[str] = []
        """Requests made on behalf of tenant B's ``b_request`` (its marker header is forwarded); not the gateway's own
        background work (the batch poller, the vector store watcher), which may land at any moment."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests.append(f"{scope['method']} {scope['path']}")
            if (_B_MARKER, b"1") in scope["headers"]:
                self.from_b.append(f"{scope['method']} {scope['path']}")
        await self.inner(scope, receive, send)


_B_MARKER = b"x-test-from-b"


@dataclass
class World:
    gateway: Gateway
    upstream: CountingUpstream
    a: openai.OpenAI
    b: openai.OpenAI
    b_key: str
    a_ids: dict[str, str] = field(default_factory=dict)
    a_contents: dict[str, bytes] = field(default_factory=dict)

    def b_request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.b_key}", _B_MARKER.decode(): "1"}
        return self.gateway.http.request(method, self.gateway.base_url + path, headers=headers, **kwargs)


@pytest.fixture(scope="module")
def counting() -> Iterator[tuple[str, CountingUpstream]]:
    upstream = CountingUpstream()
    with ServedApp(upstream, lifespan="off") as served:
        yield served.url + "/v1", upstream


@pytest.fixture(scope="module")
def world(
    postgres_server: str,
    redis_url: str,
    counting: tuple[str, CountingUpstream],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """Tenant A with one of every object; tenant B with its own file. Shared by the module's read-only checks."""
    base, upstream = counting
    url, drop = _create_pg_database(postgres_server)
    database.upgrade(url)
    with own_redis_prefix(redis_url) as prefix:
        settings = make_settings(
            database_url=url,
            redis_url=redis_url,
            redis_prefix=prefix,
            upstream_base_url=base,
            object_poll_seconds=0.5,
            spool_dir=tmp_path_factory.mktemp("spool"),
            tenant_upstream_allowed_networks="127.0.0.0/8",
            tenant_upstream_allow_http=True,
        )
        app = create_app(settings)
        with ServedApp(app, **uvicorn_options(settings)) as served:
            gateway = Gateway(served.url, ADMIN_TOKEN, settings, app.runtime, served.loop)  # type: ignore[arg-type]
            a_key, b_key = gateway.new_key("victim")["key"], gateway.new_key("attacker")["key"]
            found = World(gateway, upstream, gateway.client(a_key), gateway.client(b_key), b_key)
            _populate(found)
            yield found
    drop()


def _populate(world: World) -> None:
    a = world.a
    ids = world.a_ids
    ids["file"] = a.files.create(file=("notes.txt", io.BytesIO(b"A's secret notes")), purpose="user_data").id
    world.a_contents[ids["file"]] = b"A's secret notes"
    ids["input"] = upload_input(a, two_model_lines(2))
    done = wait_ended(a, create(a, ids["input"]).id)
    assert done.output_file_id is not None
    ids["batch_done"], ids["output"] = done.id, done.output_file_id
    ids["batch_running"] = create(a, ids["input"], metadata={"dev_seconds": "3600"}).id
    upload = a.uploads.create(bytes=4, filename="u.txt", mime_type="text/plain", purpose="user_data")
    ids["upload"] = upload.id
    ids["part"] = a.uploads.parts.create(upload.id, data=b"data").id
    world.b.files.create(file=("mine.txt", io.BytesIO(b"B's own")), purpose="user_data")
    ids["response"] = a.responses.create(model="gpt-4o-mini", input="A's private question").id


_FILE_ROUTES = [("GET", "/files/{id}"), ("DELETE", "/files/{id}"), ("GET", "/files/{id}/content")]


def _attempts(world: World) -> Iterator[tuple[str, httpx.Response]]:
    """Every route and body field of tenant B's API that can name one of A's objects, with A's ids."""
    ids = world.a_ids
    for name in ("file", "input", "output"):
        for method, template in _FILE_ROUTES:
            yield f"{method} {template} ({name})", world.b_request(method, template.format(id=ids[name]))
    for name in ("batch_done", "batch_running"):
        yield f"GET batch ({name})", world.b_request("GET", f"/batches/{ids[name]}")
        yield f"cancel batch ({name})", world.b_request("POST", f"/batches/{ids[name]}/cancel")
    upload = ids["upload"]
    yield "add part", world.b_request("POST", f"/uploads/{upload}/parts", files={"data": ("d", b"evil")})
    yield "complete", world.b_request("POST", f"/uploads/{upload}/complete", json={"part_ids": [ids["part"]]})
    yield "cancel upload", world.b_request("POST", f"/uploads/{upload}/cancel")
    batch = {"input_file_id": ids["input"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    yield "batch from A's input", world.b_request("POST", "/batches", json=batch)
    part = {"type": "input_file", "file_id": ids["file"]}
    responses = {"model": "gpt-4o-mini", "input": [{"role": "user", "content": [part]}]}
    yield "responses input_file", world.b_request("POST", "/responses", json=responses)
    chat_part = {"type": "file", "file": {"file_id": ids["output"]}}
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [chat_part]}]}
    yield "chat file part", world.b_request("POST", "/chat/completions", json=chat)
    container = {"type": "code_interpreter", "container": {"type": "auto", "file_ids": [ids["input"]]}}
    tools = {"model": "gpt-4o-mini", "input": "x", "tools": [container]}
    yield "code interpreter file_ids", world.b_request("POST", "/responses", json=tools)


def test_another_tenants_ids_are_unknown_on_every_route_and_field(world: World) -> None:
    before = len(world.upstream.from_b)
    problems = []
    for what, response in _attempts(world):
        error = response.json().get("error") if response.headers["content-type"] == "application/json" else None
        if (
            response.status_code != 404
            or not isinstance(error, dict)
            or set(error) != {"message", "type", "param", "code"}
        ):
            problems.append(f"{what}: {response.status_code} {response.text[:200]}")
    assert problems == []
    assert world.upstream.from_b[before:] == [], "nothing of B's attempts reached the upstream"
    # The marker does reach the upstream when B's request is forwarded (so the check above can fail).
    assert world.b_request("GET", "/files/" + world.b.files.list().data[0].id).status_code == 200
    assert world.upstream.from_b[before:] != []
    # A's objects are as they were.
    a, ids = world.a, world.a_ids
    assert a.files.content(ids["file"]).read() == world.a_contents[ids["file"]]
    assert a.batches.retrieve(ids["batch_running"]).status in ("validating", "in_progress")
    assert a.batches.retrieve(ids["batch_done"]).status == "completed"
    assert a.uploads.parts.create(ids["upload"], data=b"more").object == "upload.part"  # still pending, A's


def test_a_complete_naming_another_tenants_part_is_refused(world: World) -> None:
    own = world.b.uploads.create(bytes=4, filename="b.txt", mime_type="text/plain", purpose="user_data")
    with pytest.raises(openai.NotFoundError) as refused:
        world.b.uploads.complete(own.id, part_ids=[world.a_ids["part"]])
    assert refused.value.body["param"] == "part_ids[0]"  # type: ignore[index]


def test_lists_show_only_the_callers_own_objects(world: World) -> None:
    b_files = world.b.files.list()
    assert [f.filename for f in b_files] == ["mine.txt"]
    assert world.b.batches.list().data == []
    assert {f.id for f in world.a.files.list()} >= {world.a_ids[n] for n in ("file", "input", "output")}
    assert {b.id for b in world.a.batches.list()} == {world.a_ids["batch_done"], world.a_ids["batch_running"]}
    # A's id as a cursor is a cursor B does not have: an empty page, as for an unknown one.
    page = world.b_request("GET", f"/files?after={world.a_ids['file']}").json()
    assert page["data"] == [] and page["has_more"] is False


_ID = re.compile(r"(file-[0-9a-f]+|batch_[0-9a-f]+|upload_[0-9a-f]+|part_[0-9a-f]+)")
_ROUTES = [
    ("GET", "/files/{id}"),
    ("DELETE", "/files/{id}"),
    ("GET", "/files/{id}/content"),
    ("GET", "/files?after={id}"),
    ("GET", "/files?purpose=batch&order=asc&limit=2"),
    ("GET", "/batches/{id}"),
    ("POST", "/batches/{id}/cancel"),
    ("GET", "/batches?after={id}&limit=1"),
    ("POST", "/uploads/{id}/cancel"),
    ("POST", "/uploads/{id}/complete"),
    ("POST", "/batches"),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(_ROUTES),
    which=st.sampled_from(["file", "input", "output", "batch_done", "batch_running", "upload", "part"]),
)
def test_no_answer_to_b_carries_an_id_of_a_beyond_the_one_it_sent(
    world: World, route: tuple[str, str], which: str
) -> None:
    method, template = route
    named = world.a_ids[which]
    body = None
    if template == "/batches":
        body = {"input_file_id": named, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    elif template.endswith("/complete"):
        body = {"part_ids": [world.a_ids["part"]]}
    response = world.b_request(method, template.format(id=named), json=body)
    sent = {named} | ({world.a_ids["part"]} if body and "part_ids" in body else set())
    leaked = {found for found in _ID.findall(response.text) if found in world.a_ids.values()} - sent
    assert leaked == set(), f"{method} {template} answered B with A's ids {leaked}"
    assert response.status_code in (200, 404), response.text


# -- T2 inside a batch: each line is a request of B's, run later by the upstream with the account's credentials --


def _line_naming(where: str, object_id: str) -> tuple[str, dict[str, Any]]:
    """A batch line (endpoint, line) whose body names ``object_id`` in the field ``where``."""
    model = "gpt-4o-mini"
    if where == "chat file part":
        part = {"type": "file", "file": {"file_id": object_id}}
        return "/v1/chat/completions", line("evil", model, "x", messages=[{"role": "user", "content": [part]}])
    body: dict[str, Any] = {"model": model, "input": "summarize"}
    if where == "input_file":
        body["input"] = [{"role": "user", "content": [{"type": "input_file", "file_id": object_id}]}]
    elif where == "previous_response_id":
        body["previous_response_id"] = object_id
    elif where == "item_reference":
        body["input"] = [{"type": "item_reference", "id": object_id}]
    elif where == "conversation string":
        body["conversation"] = object_id
    elif where == "conversation object":
        body["conversation"] = {"id": object_id}
    elif where == "vector_store_ids":
        body["tools"] = [{"type": "file_search", "vector_store_ids": [object_id]}]
    else:
        body["tools"] = [{"type": "code_interpreter", "container": {"type": "auto", "file_ids": [object_id]}}]
    return "/v1/responses", {"custom_id": "evil", "method": "POST", "url": "/v1/responses", "body": body}


_LINE_FIELDS = [
    "chat file part", "input_file", "previous_response_id", "item_reference", "conversation string",
    "conversation object", "vector_store_ids", "code_interpreter file_ids",
]  # fmt: skip


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    where=st.sampled_from(_LINE_FIELDS),
    which=st.sampled_from(["file", "input", "output", "response", "unknown"]),
    position=st.integers(min_value=1, max_value=3),
)
def test_a_batch_line_naming_another_tenants_object_is_refused_like_an_unknown_one(
    world: World, where: str, which: str, position: int
) -> None:
    """Without this check B's batch would have the upstream read A's file, response or conversation into B's
    output file: the line runs later, with the platform's key, where no ownership check can stand in between."""
    named = world.a_ids.get(which, "file-0123456789abcdef0123456789abcdef")
    endpoint, evil = _line_naming(where, named)
    url = "/v1/responses" if endpoint == "/v1/responses" else "/v1/chat/completions"
    honest = [line(f"ok-{i}", "gpt-4o-mini", "hello", url=url) for i in range(position - 1)]
    if endpoint == "/v1/responses":
        honest = [{**h, "body": {"model": "gpt-4o-mini", "input": "hello"}} for h in honest]
    input_id = upload_input(world.b, [*honest, evil])
    before = len(world.upstream.requests)
    refused = world.b_request(
        "POST", "/batches", json={"input_file_id": input_id, "endpoint": endpoint, "completion_window": "24h"}
    )
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_batch_input" and error["param"] == "input_file_id"
    assert error["message"].startswith(f"Line {position} of the input file: "), error["message"]
    assert named in error["message"]  # the same words for A's id and for one that never existed
    assert "POST /v1/batches" not in world.upstream.requests[before:], "no batch was made upstream"
    assert not any(b.input_file_id == input_id for b in world.b.batches.list())


def test_a_batch_line_naming_its_model_twice_is_refused(world: World) -> None:
    """The gateway reads the last ``model`` of a line; a parser keeping the first would run a model never checked."""
    raw = (
        b'{"custom_id": "twice", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o", '
        b'"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}}\n'
    )
    input_id = world.b.files.create(file=("twice.jsonl", io.BytesIO(raw)), purpose="batch").id
    with pytest.raises(openai.BadRequestError) as refused:
        create(world.b, input_id)
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "duplicate_key"
    assert error["message"].startswith("Line 1 of the input file: ") and "'model'" in error["message"]


# -- T3: an upstream that answers with another tenant's ids --------------------------------------------------------


@pytest.fixture
def liar() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


def test_an_endpoint_answering_with_another_tenants_ids_makes_nobody_their_owner(
    world: World, liar: ScriptedUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """B's own endpoint (BYOK) names A's file when B uploads, and A's output file in a batch of B's."""
    gateway = world.gateway
    b_tenant = gateway.admin("GET", "/admin/tenants").json()
    b_id = next(t["id"] for t in b_tenant["data"] if t["name"].startswith("attacker"))
    put = gateway.admin(
        "PUT", f"/admin/tenants/{b_id}/upstream-keys/default", json={"api_key": "sk-b", "base_url": liar.base_url}
    )
    assert put.status_code == 200, put.text
    try:
        file = {"id": world.a_ids["file"], "object": "file", "bytes": 3, "created_at": 1, "filename": "x",
                "purpose": "batch", "status": "processed"}  # fmt: skip
        liar.push(json_answer(200, file))
        with caplog.at_level(logging.WARNING, logger="tenantgate.security"), pytest.raises(openai.APIStatusError) as up:
            world.b.files.create(file=("x.jsonl", io.BytesIO(b"{}")), purpose="batch")
        assert up.value.status_code == 502 and world.a_ids["file"] not in up.value.response.text
        assert any(world.a_ids["file"] in r.getMessage() for r in caplog.records)
        with pytest.raises(openai.NotFoundError):
            world.b.files.retrieve(world.a_ids["file"])
        # A batch of B's own whose answer names A's output file is withheld; the file stays A's.
        own_input = {"id": "file-bsown0001", "object": "file", "bytes": 3, "created_at": 1, "filename": "in.jsonl",
                     "purpose": "batch", "status": "processed"}  # fmt: skip
        liar.push(json_answer(200, own_input))
        b_input = world.b.files.create(file=("in.jsonl", io.BytesIO(b"{}")), purpose="batch")
        content = orjson.dumps(line("one", "gpt-4o-mini", "x")) + b"\n"
        liar.push(
            json_answer(200, content),
            json_answer(200, _batch("batch_bsown0001", b_input.id, None)),
            json_answer(200, _batch("batch_bsown0001", b_input.id, world.a_ids["output"])),
        )
        batch = create(world.b, b_input.id)
        with pytest.raises(openai.APIStatusError) as withheld:
            world.b.batches.retrieve(batch.id)
        assert withheld.value.status_code == 502 and world.a_ids["output"] not in withheld.value.response.text
        assert world.a.files.retrieve(world.a_ids["output"]).id == world.a_ids["output"]
        with pytest.raises(openai.NotFoundError):
            world.b.files.content(world.a_ids["output"])
    finally:
        gateway.admin("DELETE", f"/admin/tenants/{b_id}/upstream-keys/default")


def _batch(batch_id: str, input_file: str, output_file: str | None) -> dict[str, Any]:
    return {
        "id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": input_file,
        "completion_window": "24h", "status": "completed" if output_file else "validating", "created_at": 1,
        "output_file_id": output_file, "error_file_id": None, "completed_at": 2 if output_file else None,
    }  # fmt: skip
