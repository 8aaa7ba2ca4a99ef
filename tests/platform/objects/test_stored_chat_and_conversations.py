"""Stored chat completions and conversations through the gateway with the official SDK, on real Postgres and Redis:
``store: true`` completions (streamed too) listed from the tenant's index with OpenAI's filters and cursors,
retrieved, updated, deleted, their messages listed; conversations and their items, and Responses turns appended to
a conversation; only model work is billed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush


def _billed(gateway: Gateway, key: str) -> dict[str, int]:
    """Totals the Usage API shows for the key's tenant, once everything spooled is written."""
    flush(gateway)
    query = {"start_time": int(time.time()) - 86400, "bucket_width": "1d", "limit": 2}
    response = gateway.http.get(
        gateway.base_url + "/organization/usage/completions",
        params=query,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    totals = {"input_tokens": 0, "output_tokens": 0, "num_model_requests": 0}
    for bucket in response.json()["data"]:
        for result in bucket["results"]:
            for name in totals:
                totals[name] += result[name]
    return totals


def _ids(page: Any) -> list[str]:
    return [item.id for item in page]


def test_stored_chat_completions_through_the_sdk(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    key = gateway.new_key("chat-store")["key"]
    client = gateway.client(key)
    messages: Any = [{"role": "user", "content": "remember the blue whale"}]
    first = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, store=True, metadata={"topic": "whales"}
    )
    time.sleep(1.05)  # distinct created seconds: lists order by them
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=messages, store=True, metadata={"topic": "krill"}
    ) as stream:
        streamed = stream.get_final_completion()
    time.sleep(1.05)
    third = client.chat.completions.create(model="gpt-4o", messages=messages, store=True, metadata={"topic": "whales"})
    unstored = client.chat.completions.create(model="gpt-4o-mini", messages=messages)

    stored = [first.id, streamed.id, third.id]
    assert _ids(client.chat.completions.list()) == stored  # oldest first, OpenAI's default order
    assert unstored.id not in _ids(client.chat.completions.list())
    assert _ids(client.chat.completions.list(order="desc")) == stored[::-1]
    assert _ids(client.chat.completions.list(metadata={"topic": "whales"})) == [first.id, third.id]
    assert _ids(client.chat.completions.list(model="gpt-4o")) == [third.id]
    page = client.chat.completions.list(limit=1)
    assert len(page.data) == 1 and page.has_more
    assert _ids(page) == stored  # the SDK follows the cursor (after=last_id) to the end

    # A streamed completion is listed as the upstream keeps it, whole.
    listed = {c.id: c for c in client.chat.completions.list()}
    assert listed[streamed.id].choices[0].message.content == streamed.choices[0].message.content

    retrieved = client.chat.completions.retrieve(first.id)
    assert retrieved.choices[0].message.content == first.choices[0].message.content
    updated = client.chat.completions.update(first.id, metadata={"topic": "krill"})
    assert updated.metadata == {"topic": "krill"}
    assert _ids(client.chat.completions.list(metadata={"topic": "krill"})) == [first.id, streamed.id]
    assert [m.content for m in client.chat.completions.messages.list(first.id)] == ["remember the blue whale"]

    deleted = client.chat.completions.delete(streamed.id)
    assert deleted.deleted is True and deleted.id == streamed.id
    assert _ids(client.chat.completions.list()) == [first.id, third.id]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(streamed.id)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(unstored.id)  # never stored: nobody's

    # Only the four creates were model work; lists, reads, updates and deletes bill nothing.
    billed = _billed(gateway, key)
    assert billed["num_model_requests"] == 4
    usages = [first.usage, listed[streamed.id].usage, third.usage, unstored.usage]  # the stream showed none
    assert None not in usages
    assert billed["output_tokens"] == sum(u.completion_tokens for u in usages if u is not None)
    assert billed["input_tokens"] == sum(u.prompt_tokens for u in usages if u is not None)


def test_list_filters_and_cursors_are_checked(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    key = gateway.new_key("chat-lists")["key"]
    headers = {"Authorization": f"Bearer {key}"}
    for query, param in (("limit=0", "limit"), ("limit=101", "limit"), ("order=up", "order"), ("limit=x", "limit")):
        response = gateway.http.get(f"{gateway.base_url}/chat/completions?{query}", headers=headers)
        assert response.status_code == 400, (query, response.text)
        assert response.json()["error"]["param"] == param
    unknown = gateway.http.get(f"{gateway.base_url}/chat/completions?after=chatcmpl-nope", headers=headers)
    assert unknown.status_code == 200 and unknown.json()["data"] == []


def test_conversations_and_items_through_the_sdk(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    made = gateway.new_key("conversations")
    key = made["key"]
    client = gateway.client(key)
    conversation = client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "my name is Ada"}], metadata={"project": "one"}
    )
    assert conversation.id.startswith("conv_")
    assert client.conversations.retrieve(conversation.id).metadata == {"project": "one"}
    assert client.conversations.update(conversation.id, metadata={"project": "two"}).metadata == {"project": "two"}

    added = client.conversations.items.create(
        conversation.id, items=[{"type": "message", "role": "user", "content": "and I like maths"}]
    )
    assert len(added.data) == 1

    turn = client.responses.create(model="gpt-4o-mini", input="what do you know?", conversation=conversation.id)
    assert turn.conversation is not None and turn.conversation.id == conversation.id
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert len(items) == 4  # the two items given, the turn's input, the turn's output
    assert items[1].id == added.data[0].id and items[-1].id == turn.output[-1].id
    # The turn saw the earlier items: its input counts them.
    alone = client.responses.create(model="gpt-4o-mini", input="what do you know?")
    assert turn.usage is not None and alone.usage is not None
    assert turn.usage.input_tokens > alone.usage.input_tokens

    retrieved = client.conversations.items.retrieve(items[0].id, conversation_id=conversation.id)
    assert retrieved.id == items[0].id
    after_delete = client.conversations.items.delete(items[0].id, conversation_id=conversation.id)
    assert after_delete.id == conversation.id
    assert [i.id for i in client.conversations.items.list(conversation.id, order="asc")] == [i.id for i in items[1:]]

    assert client.conversations.delete(conversation.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)
    billed = _billed(gateway, key)
    assert billed["num_model_requests"] == 2  # the two responses; conversations and items are not model work
    events = [
        e
        for e in all_events(gateway)
        if e["api_key_id"] == made["id"] and e["endpoint"].startswith("/v1/conversations")
    ]
    assert {e["endpoint"] for e in events} == {
        "/v1/conversations",
        "/v1/conversations/{conversation_id}",
        "/v1/conversations/{conversation_id}/items",
        "/v1/conversations/{conversation_id}/items/{item_id}",
    }
    assert not any(e["billable"] or e["input_tokens"] or e["output_tokens"] for e in events)


def test_bodies_are_checked_before_the_upstream(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    key = gateway.new_key("chat-bodies")["key"]
    client = gateway.client(key)
    kept = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], store=True)
    with pytest.raises(openai.APIStatusError) as large:
        client.chat.completions.update(kept.id, metadata={"k": "v" * 70_000})
    assert large.value.status_code == 413
    too_many: Any = [{"type": "message", "role": "user", "content": str(i)} for i in range(21)]
    with pytest.raises(openai.BadRequestError) as many:
        client.conversations.create(items=too_many)
    assert many.value.body["param"] == "items"  # type: ignore[index]
    twice = gateway.http.post(
        f"{gateway.base_url}/chat/completions/{kept.id}",
        content=b'{"metadata": {}, "metadata": {"k": "v"}}',
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert twice.status_code == 400 and twice.json()["error"]["code"] == "duplicate_key"
    assert client.chat.completions.retrieve(kept.id).metadata == {}


def test_another_replica_lists_and_serves_what_one_stored(objects_gateway: Callable[..., Gateway]) -> None:
    """Two gateways on one database and Redis, as replicas: the index row written off the chat path on one is
    listed by the other, and ownership is known to both at once."""
    first, second = objects_gateway(), objects_gateway()
    key = first.new_key("replicas")["key"]
    kept = first.client(key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], store=True
    )
    other = second.client(key)
    assert other.chat.completions.retrieve(kept.id).id == kept.id
    deadline = time.monotonic() + 5
    while [c.id for c in other.chat.completions.list()] != [kept.id]:
        assert time.monotonic() < deadline, "the other replica never listed the stored completion"
        time.sleep(0.05)
    conversation = first.client(key).conversations.create()
    assert other.conversations.retrieve(conversation.id).id == conversation.id


def test_an_item_a_turn_added_to_a_conversation_can_be_named_beside_it_by_its_owner_only(
    objects_gateway: Callable[..., Gateway],
) -> None:
    """A Responses turn in a conversation appends its input to the conversation upstream, under an id the gateway
    never saw. Named by id beside that conversation, it is found there upstream and becomes the caller's; another
    tenant naming it (beside a conversation of its own) gets the 404 of an unknown id."""
    gateway = objects_gateway()
    owner = gateway.client(gateway.new_key("talker")["key"])
    other = gateway.client(gateway.new_key("other")["key"])
    conversation = owner.conversations.create()
    owner.responses.create(model="gpt-4o-mini", input="remember the word umbrella", conversation=conversation.id)
    # The turn's input item, read at the upstream itself (listing it through the gateway would record it).
    listed = httpx.get(
        f"{gateway.settings.upstream_base_url}/conversations/{conversation.id}/items",
        headers={"Authorization": f"Bearer {UPSTREAM_KEY}"},
    ).json()["data"]
    unseen = next(item["id"] for item in listed if item.get("role") == "user")
    reference = [{"type": "item_reference", "id": unseen}]
    answer = owner.responses.create(model="gpt-4o-mini", input=reference, conversation=conversation.id)  # type: ignore[arg-type]
    assert answer.status == "completed"
    theirs = other.conversations.create()
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="gpt-4o-mini", input=reference, conversation=theirs.id)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="gpt-4o-mini", input=reference, conversation=conversation.id)  # type: ignore[arg-type]
