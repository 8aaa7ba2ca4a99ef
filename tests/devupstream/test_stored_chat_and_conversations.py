"""The dev upstream keeps stored chat completions and conversations as OpenAI does, for the official SDK: what the
gateway's tests of their ownership stand on."""

from __future__ import annotations

from typing import Any

import openai
import pytest

MESSAGES: Any = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "name a whale"}]


def test_only_store_true_completions_are_kept_and_listed(client: openai.OpenAI) -> None:
    kept = client.chat.completions.create(model="dev-a", messages=MESSAGES, store=True, metadata={"run": "x1"})
    with client.chat.completions.stream(model="dev-b", messages=MESSAGES, store=True, metadata={"run": "x1"}) as s:
        streamed = s.get_final_completion()
    dropped = client.chat.completions.create(model="dev-a", messages=MESSAGES)
    listed = [c.id for c in client.chat.completions.list(metadata={"run": "x1"})]
    assert listed == [kept.id, streamed.id]  # oldest first
    assert [c.id for c in client.chat.completions.list(metadata={"run": "x1"}, model="dev-b")] == [streamed.id]
    assert client.chat.completions.retrieve(streamed.id).choices[0].message.content == (
        streamed.choices[0].message.content
    )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(dropped.id)
    messages = client.chat.completions.messages.list(kept.id)
    assert [(m.id, m.role, m.content) for m in messages] == [
        (f"{kept.id}-0", "system", "be brief"),
        (f"{kept.id}-1", "user", "name a whale"),
    ]
    assert client.chat.completions.update(kept.id, metadata={"run": "x2"}).metadata == {"run": "x2"}
    assert [c.id for c in client.chat.completions.list(metadata={"run": "x1"})] == [streamed.id]
    assert client.chat.completions.delete(kept.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.delete(kept.id)


def test_bad_metadata_is_refused_before_anything_is_kept(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="dev-a", messages=MESSAGES, store=True, metadata={"k": "v" * 513})
    assert refused.value.body["param"] == "metadata"  # type: ignore[index]


def test_a_conversation_collects_its_items_and_responses_turns(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(items=[{"type": "message", "role": "user", "content": "I am Ada"}])
    first = client.responses.create(model="dev-a", input="who am I?", conversation=conversation.id)
    second = client.responses.create(model="dev-a", input="who am I?", conversation={"id": conversation.id})
    assert first.conversation is not None and first.conversation.id == conversation.id
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # the earlier turn is part of the input
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [i.type for i in items] == ["message"] * 5
    assert [items[2].id, items[4].id] == [first.output[-1].id, second.output[-1].id]
    assert client.conversations.items.delete(items[0].id, conversation_id=conversation.id).id == conversation.id
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(items[0].id, conversation_id=conversation.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="dev-a", input="x", conversation=conversation.id, previous_response_id=first.id)
    assert client.conversations.delete(conversation.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="dev-a", input="x", conversation=conversation.id)
