"""Threats T2 and T3, with two tenants and the official SDK: ids of stored objects named anywhere in a request must be
the caller's (T2), and an upstream that answers with another tenant's id never makes the caller its owner (T3)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import openai
import orjson
import pytest

from tests.support.gateway import Gateway
from tests.support.recording import RecordingUpstream, serve_recording
from tests.support.scripted import ScriptedUpstream, json_answer, sse_answer

VICTIM_RESPONSE = "resp_victim0001"
VICTIM_ITEM = "msg_victim0001"


@pytest.fixture
def platform() -> Iterator[RecordingUpstream]:
    recorder = RecordingUpstream()
    with serve_recording(recorder):
        yield recorder


@pytest.fixture
def two_tenants(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, platform: RecordingUpstream
) -> tuple[Gateway, dict[str, Any], dict[str, Any]]:
    """Tenant A (the victim) owns VICTIM_RESPONSE with output item VICTIM_ITEM; tenant B is the attacker."""
    gateway = gateway_factory(
        database_url=sqlite_url,
        upstream_base_url=platform.base_url,
        tenant_upstream_allowed_networks="127.0.0.0/8",
        tenant_upstream_allow_http=True,
    )
    victim, attacker = gateway.new_key("victim"), gateway.new_key("attacker")
    platform.next_response_id, platform.item_ids = VICTIM_RESPONSE, [VICTIM_ITEM]
    gateway.client(victim["key"]).responses.create(model="gpt-4o-mini", input="secret plans")
    platform.next_response_id, platform.item_ids = "resp_attacker01", ["msg_attacker01"]
    platform.clear()
    return gateway, victim, attacker


def _post(gateway: Gateway, key: str, path: str, body: dict[str, Any]) -> Any:
    return gateway.http.post(gateway.base_url + path, headers={"Authorization": f"Bearer {key}"}, json=body)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"type": "item_reference", "id": VICTIM_ITEM}]}, "input[0].id"),
        ({"input": [{"type": "message", "id": VICTIM_ITEM, "role": "assistant", "content": []}]}, "input[0].id"),
        ({"input": {"type": "item_reference", "id": VICTIM_ITEM}}, "input.id"),
        ({"input": "hi", "previous_response_id": VICTIM_RESPONSE}, "previous_response_id"),
        ({"input": "hi", "conversation": "conv_victim"}, "conversation"),
        ({"input": "hi", "conversation": {"id": "conv_victim"}}, "conversation"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-v"}]}]}, None),
        ({"input": "hi", "tools": [{"type": "file_search", "vector_store_ids": ["vs_victim"]}]}, None),
        # One id where a list is due: an upstream that reads it as a list of one must not get it unchecked.
        ({"input": "hi", "tools": [{"type": "file_search", "vector_store_ids": "vs_victim"}]}, None),
        (
            {"input": "hi", "tools": [{"type": "code_interpreter", "container": {"type": "auto", "file_ids": "f"}}]},
            None,
        ),
        ({"input": "hi", "tools": [{"type": "code_interpreter", "container": "cntr_victim"}]}, None),
        # The audit's walk-arounds: a container named by container_id, a skill by skill_id.
        (
            {
                "input": "hi",
                "tools": [
                    {"type": "shell", "environment": {"type": "container_reference", "container_id": "cntr_victim"}}
                ],
            },
            "tools[0].environment.container_id",
        ),
        (
            {"input": [{"type": "shell_call", "call_id": "call_1", "environment": {"container_id": "cntr_victim"}}]},
            "input[0].environment.container_id",
        ),
        ({"input": "hi", "tools": [{"type": "shell", "skills": [{"skill_id": "skill_v"}]}]}, None),
        # A key the gateway does not know (yet): a stored object's id under any *_id / *_ids key is checked.
        ({"input": "hi", "tools": [{"type": "future_tool", "source_file_id": "file-victim"}]}, None),
        ({"input": "hi", "tools": [{"type": "future_tool", "store_ids": ["vs_victim"]}]}, None),
        ({"input": "hi", "metadata": {"previous_id": VICTIM_RESPONSE}}, "metadata.previous_id"),
        (
            {"input": "hi", "tools": [{"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["f"]}}]},
            None,
        ),
    ],
)
def test_a_body_naming_another_tenants_object_is_refused_before_the_upstream(
    two_tenants: tuple[Gateway, dict[str, Any], dict[str, Any]],
    platform: RecordingUpstream,
    body: dict[str, Any],
    param: str | None,
) -> None:
    gateway, _, attacker = two_tenants
    response = _post(gateway, attacker["key"], "/responses", {"model": "gpt-4o-mini", **body})
    assert response.status_code == 404, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    if param is not None:
        assert response.json()["error"]["param"] == param
    assert platform.seen == []  # nothing reached the upstream


def test_a_chat_message_naming_another_tenants_audio_is_refused_and_the_owner_passes(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, attacker_endpoint: ScriptedUpstream
) -> None:
    """A chat answer's audio is its tenant's: a later message names it as ``audio.id`` (streamed or not)."""
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=attacker_endpoint.base_url)
    victim, attacker = gateway.new_key("victim"), gateway.new_key("attacker")
    message = {"role": "assistant", "content": None, "audio": {"id": "audio_victim01", "data": "", "transcript": "x",
                                                                "expires_at": 1}}  # fmt: skip
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-audio-preview",
              "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage}  # fmt: skip
    chunk = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-audio-preview",
             "choices": [{"index": 0, "delta": {"audio": {"id": "audio_victim02", "data": "AA"}}}]}  # fmt: skip
    last = {**chunk, "choices": [], "usage": usage}
    attacker_endpoint.push(json_answer(200, answer))
    attacker_endpoint.push(
        sse_answer([b"data: " + orjson.dumps(c) + b"\n\n" for c in (chunk, last)] + [b"data: [DONE]\n\n"])
    )
    victims = gateway.client(victim["key"])
    ask = {
        "model": "gpt-4o-audio-preview",
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
    }
    victims.chat.completions.create(messages=[{"role": "user", "content": "hi"}], **ask)  # type: ignore[call-overload]
    for _ in victims.chat.completions.create(messages=[{"role": "user", "content": "hi"}], stream=True, **ask):  # type: ignore[call-overload]
        pass
    seen = len(attacker_endpoint.requests)
    for audio_id in ("audio_victim01", "audio_victim02"):
        follow_up = {
            **ask,
            "messages": [{"role": "assistant", "audio": {"id": audio_id}}, {"role": "user", "content": "again"}],
        }
        refused = _post(gateway, attacker["key"], "/chat/completions", follow_up)
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["param"] == "messages[0].audio.id"
        assert len(attacker_endpoint.requests) == seen  # nothing reached the upstream
        attacker_endpoint.push(json_answer(200, answer | {"id": "chatcmpl-3"}))
        assert _post(gateway, victim["key"], "/chat/completions", follow_up).status_code == 200
        seen += 1
        assert len(attacker_endpoint.requests) == seen


def test_chat_file_parts_are_refused_and_own_items_pass(
    two_tenants: tuple[Gateway, dict[str, Any], dict[str, Any]], platform: RecordingUpstream
) -> None:
    gateway, victim, attacker = two_tenants
    file_part = {"type": "file", "file": {"file_id": "file-victim"}}
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [file_part]}]}
    assert _post(gateway, attacker["key"], "/chat/completions", chat).status_code == 404
    assert platform.seen == []
    # The owner continues from its own response and passes its own output item back by id.
    own = gateway.client(victim["key"]).responses.create(
        model="gpt-4o-mini",
        previous_response_id=VICTIM_RESPONSE,
        input=[{"type": "item_reference", "id": VICTIM_ITEM}],
    )
    assert own.id == "resp_attacker01"  # the recorder's next id; what matters: it was forwarded
    assert len(platform.seen) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "gpt-4o-mini", "model": "other", "input": "x"}',
        b'{"model": "gpt-4o-mini", "mod\\u0065l": "other", "input": "x"}',
        b'{"model": "gpt-4o-mini", "input": [{"type": "item_reference", "id": "msg_attacker01", "id": "'
        + VICTIM_ITEM.encode()
        + b'"}]}',
        b'{"model": "gpt-4o-mini", "stream": false, "stream": true, "input": "x"}',
    ],
)
def test_a_key_named_twice_is_refused(
    two_tenants: tuple[Gateway, dict[str, Any], dict[str, Any]], platform: RecordingUpstream, raw: bytes
) -> None:
    gateway, _, attacker = two_tenants
    headers = {"Authorization": f"Bearer {attacker['key']}", "Content-Type": "application/json"}
    response = gateway.http.post(gateway.base_url + "/responses", headers=headers, content=raw)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "duplicate_key"
    assert platform.seen == []


@pytest.mark.parametrize(
    "items",
    [
        {"type": "item_reference", "id": VICTIM_ITEM},
        {"0": {"type": "item_reference", "id": VICTIM_ITEM}},
        VICTIM_ITEM,
    ],
)
def test_conversation_items_that_are_not_a_list_are_refused_before_the_upstream(
    two_tenants: tuple[Gateway, dict[str, Any], dict[str, Any]], platform: RecordingUpstream, items: Any
) -> None:
    """Items are checked by id only in a list; any other shape an upstream might still read as items is refused."""
    gateway, _, attacker = two_tenants
    response = _post(gateway, attacker["key"], "/conversations", {"items": items})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "items"
    assert platform.seen == []


@pytest.fixture
def attacker_endpoint() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


def _victims_id_answer(stream: bool) -> Any:
    response = {"id": VICTIM_RESPONSE, "object": "response", "status": "completed", "model": "gpt-4o-mini",
                "output": [], "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}  # fmt: skip
    if not stream:
        return json_answer(200, response)
    events = [
        {"type": "response.created", "sequence_number": 0, "response": {**response, "status": "in_progress"}},
        {"type": "response.completed", "sequence_number": 1, "response": response},
    ]
    return sse_answer([f"event: {e['type']}\ndata: ".encode() + orjson.dumps(e) + b"\n\n" for e in events])


@pytest.mark.parametrize("stream", [False, True])
def test_an_endpoint_naming_another_tenants_id_makes_nobody_its_owner(
    two_tenants: tuple[Gateway, dict[str, Any], dict[str, Any]],
    attacker_endpoint: ScriptedUpstream,
    platform: RecordingUpstream,
    caplog: pytest.LogCaptureFixture,
    stream: bool,
) -> None:
    """The review's BYOK attack: the attacker's own endpoint answers with the victim's response id."""
    gateway, victim, attacker = two_tenants
    put = gateway.admin(
        "PUT",
        f"/admin/tenants/{attacker['tenant_id']}/upstream-keys/default",
        json={"api_key": "sk-attackers-own", "base_url": attacker_endpoint.base_url},
    )
    assert put.status_code == 200, put.text
    attacker_endpoint.push(_victims_id_answer(stream))
    client = gateway.client(attacker["key"])
    with caplog.at_level(logging.WARNING, logger="tenantgate.security"):
        if stream:
            with pytest.raises(openai.APIError) as raised:
                for _ in client.responses.create(model="gpt-4o-mini", input="x", stream=True):
                    pass
            assert "withheld" in str(raised.value)
        else:
            with pytest.raises(openai.InternalServerError) as refused:
                client.responses.create(model="gpt-4o-mini", input="x")
            assert refused.value.status_code == 502
            assert refused.value.body["code"] == "upstream_object_conflict"  # type: ignore[index]
    assert any(VICTIM_RESPONSE in record.getMessage() for record in caplog.records)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(VICTIM_RESPONSE)
    gateway.admin("DELETE", f"/admin/tenants/{attacker['tenant_id']}/upstream-keys/default")
    with pytest.raises(openai.NotFoundError):
        gateway.client(attacker["key"]).responses.retrieve(VICTIM_RESPONSE)  # not even with the platform's key
    assert all(VICTIM_RESPONSE not in seen.raw_path for seen in platform.seen)
    assert gateway.client(victim["key"]).responses.retrieve(VICTIM_RESPONSE).id == VICTIM_RESPONSE
