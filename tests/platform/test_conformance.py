"""Conformance: the official openai SDK, sync and async, through every endpoint of the gateway (dev upstream)."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.support.gateway import Gateway

MESSAGES = [{"role": "user", "content": "conformance check"}]


@pytest.fixture
def key(gateway: Gateway) -> str:
    return str(gateway.new_key()["key"])


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest, gateway: Gateway, key: str) -> Callable[..., Any]:
    """Run ``fn(client)`` with a sync client, or with an async client (awaiting and draining its result)."""
    if request.param == "sync":
        client = gateway.client(key)
        return lambda fn: fn(client)

    async def drain(value: Any) -> Any:
        value = await value
        if isinstance(value, openai.AsyncStream):
            return [item async for item in value]
        return value

    def run(fn: Callable[[openai.AsyncOpenAI], Any]) -> Any:
        async def main() -> Any:
            async with gateway.async_client(key) as client:
                return await drain(fn(client))

        return asyncio.run(main())

    return run


def _stream(result: Any) -> list[Any]:
    return result if isinstance(result, list) else list(result)


def test_chat(call: Callable[..., Any]) -> None:
    completion = call(lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES))
    assert completion.choices[0].message.content and completion.usage.total_tokens > 0
    chunks = _stream(call(lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert all(ch.usage is None for ch in chunks)


def test_legacy_completions(call: Callable[..., Any]) -> None:
    completion = call(lambda c: c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi"))
    assert completion.choices[0].text and completion.usage.completion_tokens > 0
    chunks = _stream(
        call(
            lambda c: c.completions.create(
                model="gpt-3.5-turbo-instruct", prompt="Hi", stream=True, stream_options={"include_usage": True}
            )
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_embeddings(call: Callable[..., Any]) -> None:
    result = call(lambda c: c.embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=16))
    assert [len(d.embedding) for d in result.data] == [16, 16]


def test_responses_create_and_stream(call: Callable[..., Any]) -> None:
    response = call(lambda c: c.responses.create(model="gpt-4o-mini", input="hello"))
    assert response.output_text and response.usage.input_tokens > 0
    events = _stream(call(lambda c: c.responses.create(model="gpt-4o-mini", input="hello", stream=True)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == events[-1].response.output_text


def test_responses_stream_helper_and_follow_up(gateway: Gateway, key: str) -> None:
    client = gateway.client(key)
    with client.responses.stream(model="gpt-4o-mini", input="first") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text
    follow_up = client.responses.create(model="gpt-4o-mini", input="second", previous_response_id=final.id)
    assert follow_up.previous_response_id == final.id
    assert client.responses.retrieve(final.id).id == final.id
    assert [item.type for item in client.responses.input_items.list(final.id)]
    assert client.responses.delete(final.id) is None


def test_moderations_and_images(call: Callable[..., Any]) -> None:
    moderation = call(lambda c: c.moderations.create(input="this mentions flag:violence"))
    assert moderation.results[0].flagged
    image = call(lambda c: c.images.generate(model="gpt-image-1", prompt="a cat", size="1024x1024"))
    assert image.data[0].b64_json


def test_audio_speech_streams_a_wav(gateway: Gateway, key: str) -> None:
    client = gateway.client(key)
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input="hi", response_format="wav"
    ) as response:
        audio = b"".join(response.iter_bytes())
    with wave.open(io.BytesIO(audio)) as parsed:
        assert parsed.getnframes() > 0


def test_audio_transcription_and_translation(call: Callable[..., Any]) -> None:
    def upload() -> tuple[str, io.BytesIO]:
        return ("clip.wav", io.BytesIO(b"RIFF" + b"\0" * 4096))

    transcript = call(lambda c: c.audio.transcriptions.create(model="gpt-4o-transcribe", file=upload()))
    assert transcript.text
    translation = call(lambda c: c.audio.translations.create(model="whisper-1", file=upload()))
    assert translation.text


def test_models(call: Callable[..., Any]) -> None:
    listing = call(lambda c: c.models.list())
    ids = [m.id for m in (listing.data if hasattr(listing, "data") else listing)]
    assert "gpt-4o-mini" in ids
    assert call(lambda c: c.models.retrieve("gpt-4o-mini")).id == "gpt-4o-mini"


def test_raw_response_headers(gateway: Gateway, key: str) -> None:
    raw = gateway.client(key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-request-id": "conformance-1"}
    )
    assert raw.headers["x-request-id"] == "conformance-1"
    assert raw.headers["x-upstream-ratelimit-limit-requests"]  # the upstream's own limits, renamed
    assert "openai-organization" not in raw.headers
    assert raw.parse().object == "chat.completion"


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, openai.BadRequestError),
        (404, openai.NotFoundError),
        (409, openai.ConflictError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
    ],
)
def test_upstream_errors_reach_the_sdk_as_its_classes(
    gateway: Gateway, key: str, status: int, error_class: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error_class) as raised:
        gateway.client(key).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"x-dev-fail": str(status), "x-dev-retry-after-ms": "1"},
        )
    assert raised.value.status_code == status
    assert raised.value.request_id and raised.value.request_id.startswith("req_")


def test_gateway_errors_reach_the_sdk_as_its_classes(gateway: Gateway, key: str) -> None:
    with pytest.raises(openai.AuthenticationError):
        gateway.client("tg-wrong").models.list()
    created = gateway.new_key("suspended")

    async def suspend() -> None:
        from sqlalchemy import update

        from tenantgate.tenants.models import Tenant

        async with gateway.runtime.sessions() as session, session.begin():
            await session.execute(update(Tenant).where(Tenant.id == created["tenant_id"]).values(status="suspended"))
        gateway.runtime.key_cache.invalidate_tenant(created["tenant_id"])

    asyncio.run_coroutine_threadsafe(suspend(), gateway.loop).result(10)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        gateway.client(created["key"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raised.value.code == "tenant_suspended"
