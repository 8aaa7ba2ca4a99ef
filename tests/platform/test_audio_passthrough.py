"""Audio: speech streamed back as it arrives; uploads streamed to the upstream after the model field."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import openai
import pytest

from tests.support.gateway import Gateway
from tests.support.scripted import Answer, ScriptedUpstream, json_answer


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def gateway(gateway_factory, sqlite_url: str, scripted: ScriptedUpstream) -> Gateway:
    return gateway_factory(database_url=sqlite_url, upstream_base_url=scripted.base_url)


def _chunked_binary(parts: list[bytes], content_type: str = "audio/mpeg") -> Answer:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    return Answer(
        [(0.0, head), *((0.05, f"{len(p):x}\r\n".encode() + p + b"\r\n") for p in parts), (0.0, b"0\r\n\r\n")]
    )


def test_speech_audio_arrives_unchanged(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    parts = [os.urandom(4096) for _ in range(5)]
    scripted.push(_chunked_binary(parts))
    client = gateway.client(gateway.new_key()["key"])
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input="hello"
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        audio = b"".join(response.iter_bytes())
    assert audio == b"".join(parts)


@pytest.mark.parametrize("size", [10_000, 3 * 1024 * 1024])
def test_transcription_upload_reaches_upstream_whole(gateway: Gateway, scripted: ScriptedUpstream, size: int) -> None:
    scripted.push(json_answer(200, {"text": "transcribed", "usage": {"type": "duration", "seconds": 3}}))
    audio = os.urandom(size)
    client = gateway.client(gateway.new_key()["key"])
    result = client.audio.transcriptions.create(model="whisper-1", file=("clip.mp3", io.BytesIO(audio)), language="en")
    assert result.text == "transcribed"
    (request,) = scripted.requests
    assert request.target == "/v1/audio/transcriptions"
    assert audio in request.body
    assert b'name="model"\r\n\r\nwhisper-1\r\n' in request.body
    assert b'name="language"\r\n\r\nen\r\n' in request.body
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")


def test_upload_without_a_model_never_reaches_upstream(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    client = gateway.client(gateway.new_key()["key"])
    with pytest.raises(openai.BadRequestError):
        client.audio.translations.create(model="", file=("clip.mp3", io.BytesIO(b"abc")))
    assert scripted.requests == []


def test_upload_that_is_not_multipart_is_400(gateway: Gateway, scripted: ScriptedUpstream) -> None:
    import httpx

    key = gateway.new_key()["key"]
    response = httpx.post(
        gateway.base_url + "/audio/transcriptions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "whisper-1"},
    )
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]["message"]
