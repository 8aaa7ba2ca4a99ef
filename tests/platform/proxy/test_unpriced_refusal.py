"""TENANTGATE_UNPRICED_MODELS=refuse: a request the gateway could not price is refused before it reaches the
upstream, with an OpenAI-shaped error the official SDK raises as BadRequestError; by default it is served and its
usage stored unpriced."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import openai
import pytest
from starlette.types import Receive, Scope, Send

from tenantgate.devupstream import DevUpstream
from tests.conftest import UPSTREAM_KEY
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush
from tests.support.server import ServedApp

MESSAGES = [{"role": "user", "content": "price me"}]


@dataclass
class CountingUpstream:
    """The dev upstream, counting the requests that reached it."""

    inner: DevUpstream = field(default_factory=lambda: DevUpstream(api_key=UPSTREAM_KEY))
    paths: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.inner(scope, receive, send)


@pytest.fixture
def upstream() -> Iterator[tuple[CountingUpstream, str]]:
    app = CountingUpstream()
    with ServedApp(app, lifespan="off") as served:
        yield app, served.url + "/v1"


def test_refused_before_the_upstream_with_an_openai_error(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, upstream: tuple[CountingUpstream, str]
) -> None:
    counting, url = upstream
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=url, unpriced_models="refuse")
    created = gateway.new_key("strict")
    client = gateway.client(created["key"])

    refusals = [
        (lambda: client.chat.completions.create(model="acme-llm", messages=MESSAGES), "model", "model_not_priced"),
        (lambda: client.chat.completions.create(model="o3-pro-x", messages=MESSAGES), "model", "model_not_priced"),
        (
            lambda: client.chat.completions.create(model="gpt-5", messages=MESSAGES, service_tier="priority"),
            "service_tier",
            "service_tier_not_priced",
        ),
        (
            lambda: client.images.generate(model="dall-e-3", prompt="a cat", size="999x999"),  # type: ignore[arg-type]
            "size",
            "image_option_not_priced",
        ),
        (lambda: client.embeddings.create(model="dall-e-3", input="x"), "model", "model_not_priced"),
    ]
    for call, param, code in refusals:
        with pytest.raises(openai.BadRequestError) as raised:
            call()
        error = raised.value.body
        assert isinstance(error, dict) and (error["param"], error["code"]) == (param, code), error
        assert error["type"] == "invalid_request_error" and "no price" in error["message"]
    assert counting.paths == []  # none of them reached the upstream

    # Priced requests go through: a model, its dated snapshot, a priced image size, flex where it has a price.
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini-2024-07-18", messages=MESSAGES)
    client.chat.completions.create(model="gpt-5", messages=MESSAGES, service_tier="flex")
    client.images.generate(model="dall-e-3", prompt="a cat", size="1024x1792", quality="hd")
    assert len(counting.paths) == 4

    flush(gateway)
    events = all_events(gateway, tenant_id=created["tenant_id"])
    refused = [e for e in events if e["status"] == 400]
    assert len(refused) == len(refusals) and not any(e["billable"] for e in refused)
    assert [e["unpriced"] for e in events if e["billable"]] == [None] * 4


def test_by_default_an_unpriced_model_is_served_and_its_usage_stored_unpriced(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, upstream: tuple[CountingUpstream, str]
) -> None:
    counting, url = upstream
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=url)
    created = gateway.new_key("lenient")
    completion = gateway.client(created["key"]).chat.completions.create(model="acme-llm", messages=MESSAGES)
    assert completion.choices and counting.paths == ["/v1/chat/completions"]
    flush(gateway)
    (event,) = all_events(gateway, tenant_id=created["tenant_id"])
    assert (event["billable"], event["unpriced"], event["cost_usd"], event["price_version"]) == (
        True,
        "model",
        None,
        None,
    )
    assert event["input_tokens"] > 0  # the usage is kept, only its price is missing


def test_audio_asked_in_a_format_that_cannot_carry_its_quantity_is_refused(
    gateway_factory: Callable[..., Gateway], sqlite_url: str, upstream: tuple[CountingUpstream, str]
) -> None:
    """The answer's format decides whether it says how much audio was handled (docs/pricing.md): refused before the
    upstream where it cannot, served where it can, with the same SDK calls."""
    counting, url = upstream
    gateway = gateway_factory(database_url=sqlite_url, upstream_base_url=url, unpriced_models="refuse")
    client = gateway.client(gateway.new_key("audio-strict")["key"])
    audio = ("clip.wav", b"RIFF" + bytes(4000), "audio/wav")
    refusals = [
        lambda: client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text"),
        lambda: client.audio.translations.create(model="whisper-1", file=audio),  # json: no duration
        lambda: client.audio.translations.create(model="whisper-1", file=audio, response_format="text"),
        lambda: client.audio.transcriptions.create(model="gpt-4o-transcribe", file=audio, response_format="text"),
        lambda: client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="hi"),  # mp3
        lambda: client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="hi", response_format="opus"),
    ]
    for call in refusals:
        with pytest.raises(openai.BadRequestError) as raised:
            call()
        error = raised.value.body
        assert isinstance(error, dict), error
        assert (error["param"], error["code"]) == ("response_format", "response_format_not_priced"), error
        assert "cannot price" in error["message"]
    assert counting.paths == []

    served = [
        lambda: client.audio.transcriptions.create(model="whisper-1", file=audio),  # json carries the seconds
        lambda: client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt"),
        lambda: client.audio.translations.create(model="whisper-1", file=audio, response_format="verbose_json"),
        lambda: client.audio.transcriptions.create(model="gpt-4o-transcribe", file=audio),
        lambda: client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="hi", response_format="wav"),
        lambda: client.audio.speech.create(model="tts-1", voice="alloy", input="hi"),  # by the character
    ]
    for call in served:
        call()
    assert len(counting.paths) == len(served)
