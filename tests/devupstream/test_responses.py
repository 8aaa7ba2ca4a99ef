"""The Responses API through the official openai SDK: create, named-event streams, and the stored responses."""

from __future__ import annotations

import time

import httpx
import openai
import orjson
import pytest

from tests.devupstream.conftest import KEY

STREAM_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def _collapse(types: list[str]) -> list[str]:
    """Event types with runs of deltas collapsed into one."""
    return [t for i, t in enumerate(types) if i == 0 or t != types[i - 1]]


def test_create_returns_a_stored_completed_response(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(
        model="gpt-4o-mini", input="Hello responses", instructions="Be brief"
    )
    response = raw.parse()
    assert raw.request_id is not None and raw.request_id.startswith("req_")
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.completed_at is not None
    assert response.output_text == "This is the tenantgate dev upstream answering: Hello responses"
    message = response.output[0]
    assert message.type == "message" and message.id.startswith("msg_") and message.status == "completed"
    assert message.content[0].type == "output_text"
    assert response.instructions == "Be brief"
    body = raw.http_response.json()
    assert body["store"] is True and body["previous_response_id"] is None
    usage = response.usage
    assert usage is not None and usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens == 9


def test_previous_response_id_is_echoed_and_grows_the_input(client: openai.OpenAI) -> None:
    first = client.responses.create(model="gpt-4o-mini", input="First turn")
    second = client.responses.create(model="gpt-4o-mini", input="First turn", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert first.usage is not None and second.usage is not None
    assert second.usage.input_tokens == first.usage.input_tokens + first.usage.total_tokens


def test_unknown_previous_response_id_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="gpt-4o-mini", input="x", previous_response_id="resp_never_made")
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"
    assert caught.value.request_id is not None


def test_responses_stream_helper(client: openai.OpenAI) -> None:
    types: list[str] = []
    with client.responses.stream(model="gpt-4o-mini", input="stream this please") as stream:
        deltas = []
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert _collapse(types) == STREAM_ORDER
    assert len(deltas) > 5
    assert final.output_text == "".join(deltas) == "This is the tenantgate dev upstream answering: stream this please"
    assert final.status == "completed" and final.usage is not None and final.usage.output_tokens == len(deltas)
    # A streamed response is stored like any other.
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_stream_wire_format_has_named_events_and_sequence_numbers(upstream: str) -> None:
    with httpx.stream(
        "POST",
        upstream + "/v1/responses",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "gpt-4o-mini", "input": "wire format", "stream": True},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = [block.split("\n") for block in raw.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    payloads = [orjson.loads(lines[1].removeprefix("data: ")) for lines in events]
    assert all(lines[0].startswith("event: ") and lines[1].startswith("data: ") for lines in events)
    assert [p["type"] for p in payloads] == names
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    assert _collapse(names) == STREAM_ORDER
    assert payloads[0]["response"]["status"] == "in_progress" and payloads[0]["response"]["usage"] is None
    completed = payloads[-1]["response"]
    assert completed["usage"]["output_tokens"] == names.count("response.output_text.delta")
    assert all("obfuscation" in p for p in payloads if p["type"] == "response.output_text.delta")


async def test_async_create_stream(async_client: openai.AsyncOpenAI) -> None:
    stream = await async_client.responses.create(model="o4-mini", input="async stream", stream=True)
    events = [event async for event in stream]
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    final = events[-1].response
    # A reasoning model answers with a reasoning item before its message, and counts reasoning tokens.
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens > 0
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [e.output_index for e in added] == [0, 1]


async def test_async_stream_helper_with_input_messages(async_client: openai.AsyncOpenAI) -> None:
    async with async_client.responses.stream(
        model="gpt-4.1-mini",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "from a message list"}]}],
    ) as stream:
        final = await stream.get_final_response()
    assert final.output_text.endswith("from a message list")


def test_max_output_tokens_makes_an_incomplete_response(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4o-mini", input="one two three four five six seven eight nine ten", max_output_tokens=16
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4o-mini", input="x", max_output_tokens=5)


def test_retrieve_delete_and_input_items(client: openai.OpenAI) -> None:
    created = client.responses.create(
        model="gpt-4o-mini",
        input=[
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": "question one"},
            {"role": "user", "content": "question two"},
        ],
    )
    assert client.responses.retrieve(created.id).id == created.id
    items = client.responses.input_items.list(created.id)
    # Newest first by default, as OpenAI lists them.
    assert [i.content[0].text for i in items.data] == ["question two", "question one", "rules"]  # type: ignore[union-attr]
    assert all(i.id.startswith("msg_") for i in items.data)
    page = client.responses.input_items.list(created.id, order="asc", limit=2)
    assert [i.role for i in page.data] == ["developer", "user"] and page.has_more  # type: ignore[union-attr]
    rest = client.responses.input_items.list(created.id, order="asc", after=page.data[-1].id)
    assert [i.content[0].text for i in rest.data] == ["question two"]  # type: ignore[union-attr]
    deleted = client.responses.with_raw_response.delete(created.id)
    assert deleted.http_response.json() == {"id": created.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="gpt-4o-mini", input="x", previous_response_id=created.id)
    assert caught.value.code == "previous_response_not_found"


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    response = client.responses.create(model="gpt-4o-mini", input="forget me", store=False)
    assert response.status == "completed"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_background_response_can_be_cancelled(client: openai.OpenAI) -> None:
    # 1 s per token keeps this background response in progress for the whole test.
    slow = {"x-dev-token-delay-ms": "1000"}
    queued = client.responses.create(model="gpt-4o-mini", input="long job", background=True, extra_headers=slow)
    assert queued.status == "queued" and queued.background
    assert client.responses.retrieve(queued.id).status == "in_progress"
    cancelled = client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled" and cancelled.output == []
    assert client.responses.retrieve(queued.id).status == "cancelled"


def test_background_response_completes_and_foreground_cannot_be_cancelled(client: openai.OpenAI) -> None:
    queued = client.responses.create(
        model="gpt-4o-mini", input="quick job", background=True, extra_headers={"x-dev-token-delay-ms": "10"}
    )
    deadline = time.monotonic() + 5
    while (current := client.responses.retrieve(queued.id)).status != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert current.status == "completed" and current.output_text.endswith("quick job")
    assert client.responses.cancel(queued.id).status == "completed"
    foreground = client.responses.create(model="gpt-4o-mini", input="now")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(foreground.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_unknown")


def test_store_is_bounded() -> None:
    from tenantgate.devupstream.response_store import ResponseStore, StoredResponse

    store = ResponseStore(limit=2)
    for name in ("a", "b", "c"):
        store.put(StoredResponse({"id": name}, []))
    assert store.get("a") is None and store.get("b") is not None and store.get("c") is not None


def test_sync_create_stream(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="gpt-4o-mini", input="sync stream", stream=True))
    assert _collapse([e.type for e in events]) == STREAM_ORDER
    completed = events[-1]
    assert completed.type == "response.completed" and completed.response.output_text.endswith("sync stream")
