"""Responses stored upstream are visible only to the tenant that created them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.gateway import Gateway
from tests.support.scripted import ScriptedUpstream, json_answer


def _response(response_id: str) -> dict[str, object]:
    return {
        "id": response_id, "object": "response", "created_at": 1, "status": "completed", "model": "gpt-4o-mini",
        "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "hello", "annotations": []}]}],
        "usage": {"input_tokens": 4, "output_tokens": 1, "total_tokens": 5,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
    }  # fmt: skip


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture(params=["memory", "redis"])
def gateway(request: pytest.FixtureRequest, gateway_factory, database_url: str, scripted: ScriptedUpstream) -> Gateway:
    extra = {}
    if request.param == "redis":
        extra = {
            "redis_url": request.getfixturevalue("redis_url"),
            "redis_prefix": request.getfixturevalue("redis_prefix"),
        }
    return gateway_factory(database_url=database_url, upstream_base_url=scripted.base_url, **extra)


def test_only_the_creator_can_read_continue_or_delete(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    owner = gateway.client(gateway.new_key("owner")["key"])
    intruder = gateway.client(gateway.new_key("intruder")["key"])
    scripted.push(json_answer(200, _response("resp_owned1")))
    created = owner.responses.create(model="gpt-4o-mini", input="hi")
    assert created.id == "resp_owned1"

    for attempt in (
        lambda: intruder.responses.retrieve("resp_owned1"),
        lambda: intruder.responses.delete("resp_owned1"),
        lambda: intruder.responses.input_items.list("resp_owned1"),
        lambda: intruder.responses.create(model="gpt-4o-mini", input="more", previous_response_id="resp_owned1"),
    ):
        with pytest.raises(openai.NotFoundError) as raised:
            attempt()
        assert "resp_owned1" in raised.value.message
    assert len(scripted.requests) == 1  # none of the intruder's calls reached the upstream

    scripted.push(json_answer(200, _response("resp_owned1")), json_answer(200, _response("resp_owned2")))
    assert owner.responses.retrieve("resp_owned1").id == "resp_owned1"
    follow_up = owner.responses.create(model="gpt-4o-mini", input="more", previous_response_id="resp_owned1")
    assert follow_up.id == "resp_owned2"
    assert [r.target for r in scripted.requests[1:]] == ["/v1/responses/resp_owned1", "/v1/responses"]


def test_unknown_response_id_is_404_like_a_foreign_one(gateway: Gateway) -> None:
    client = gateway.client(gateway.new_key()["key"])
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_never_existed")


def test_owner_survives_a_restart_through_the_database(
    gateway_factory, database_url: str, scripted: ScriptedUpstream
) -> None:
    first = gateway_factory(database_url=database_url, upstream_base_url=scripted.base_url)
    created_key = first.new_key()
    scripted.push(json_answer(200, _response("resp_durable")))
    first.client(created_key["key"]).responses.create(model="gpt-4o-mini", input="hi")
    # The batch writer lands the owner in the database; a second process (its own memory, no Redis) finds it there.
    asyncio.run_coroutine_threadsafe(first.runtime.ownership.flush(), first.loop).result(10)
    second = gateway_factory(database_url=database_url, upstream_base_url=scripted.base_url)
    scripted.push(json_answer(200, _response("resp_durable")))
    assert second.client(created_key["key"]).responses.retrieve("resp_durable").id == "resp_durable"


def test_unknown_files_batches_and_vector_stores_are_404(gateway: Gateway) -> None:
    key = gateway.new_key()["key"]
    for method, path in (
        ("GET", "/vector_stores/vs_abc"),
        ("POST", "/vector_stores/vs_abc/search"),
        ("GET", "/vector_stores/vs_abc/files/file-abc"),
        ("GET", "/files/file-abc/content"),
        ("GET", "/files/file-abc"),
        ("GET", "/batches/batch_abc"),
        ("POST", "/uploads/upload_abc/cancel"),
    ):
        response = httpx.request(method, gateway.base_url + path, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["type"] == "invalid_request_error"
