"""Moderations, images and audio through the official openai SDK."""

from __future__ import annotations

import base64
import io
import struct
import time
import warnings
import wave
import zlib

import httpx
import openai
import orjson
import pytest

from tenantgate.devupstream.audio import wav_header
from tests.devupstream.conftest import KEY


def _assert_valid_png(data: bytes) -> None:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    offset = 8
    kinds = []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        kinds.append(kind)
        offset += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


def _wav(seconds: float, rate: int = 16_000) -> bytes:
    pcm = bytes(int(rate * seconds) * 2)
    return wav_header(len(pcm), rate) + pcm


def test_moderation_flags_the_marked_category(client: openai.OpenAI) -> None:
    result = client.moderations.create(model="omni-moderation-latest", input=["a kind word", "flag:violence here"])
    assert result.id.startswith("modr-") and result.model == "omni-moderation-latest"
    calm, marked = result.results
    assert not calm.flagged and not any(calm.categories.model_dump().values())
    assert marked.flagged and marked.categories.violence and not marked.categories.hate
    assert marked.category_scores.violence > 0.9 > calm.category_scores.violence
    # Deterministic: the same text gets the same scores.
    again = client.moderations.create(input="a kind word").results[0]
    assert again.category_scores == calm.category_scores


def test_moderation_of_text_and_image_parts(client: openai.OpenAI) -> None:
    result = client.moderations.create(
        model="omni-moderation-latest",
        input=[
            {"type": "text", "text": "flag:self-harm/intent"},
            {"type": "image_url", "image_url": {"url": "https://example.invalid/x.png"}},
        ],
    )
    (only,) = result.results
    assert only.flagged and only.categories.self_harm_intent
    assert only.category_applied_input_types.violence == ["text", "image"]


def test_gpt_image_answers_base64_png_with_usage(client: openai.OpenAI) -> None:
    result = client.images.generate(model="gpt-image-1", prompt="a red fox in snow", n=2, quality="high")
    assert result.data is not None and len(result.data) == 2
    for image in result.data:
        assert image.b64_json is not None
        _assert_valid_png(base64.b64decode(image.b64_json))
    assert result.usage is not None
    assert result.usage.input_tokens_details.text_tokens == result.usage.input_tokens == 5
    assert result.usage.input_tokens_details.image_tokens == 0
    assert result.usage.output_tokens == 2 * 4160
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens
    assert (result.quality, result.size, result.output_format) == ("high", "1024x1024", "png")


def test_dall_e_answers_a_url_it_serves(client: openai.OpenAI) -> None:
    result = client.images.generate(model="dall-e-3", prompt="a lighthouse")
    assert result.data is not None and result.data[0].url is not None
    assert result.data[0].revised_prompt == "a lighthouse"
    fetched = httpx.get(result.data[0].url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    _assert_valid_png(fetched.content)
    as_b64 = client.images.generate(model="dall-e-2", prompt="a lighthouse", response_format="b64_json")
    assert as_b64.data is not None and as_b64.data[0].b64_json is not None


def test_gpt_image_stream_sends_partials_then_completed(client: openai.OpenAI) -> None:
    events = list(client.images.generate(model="gpt-image-1", prompt="a boat", stream=True, partial_images=2))
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    completed = events[-1]
    assert completed.type == "image_generation.completed" and completed.usage.output_tokens == 1056
    _assert_valid_png(base64.b64decode(completed.b64_json))


def test_speech_streams_a_valid_wav_in_chunks(client: openai.OpenAI) -> None:
    started = time.monotonic()
    arrivals = []
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input="Hello from the dev upstream, this is a spoken sentence.",
        response_format="wav",
        extra_headers={"x-dev-token-delay-ms": "5"},
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["x-request-id"].startswith("req_")
        audio = b""
        for chunk in response.iter_bytes():
            arrivals.append(time.monotonic() - started)
            audio += chunk
    with wave.open(io.BytesIO(audio)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24_000, 1, 2)
        assert wav.getnframes() / wav.getframerate() == pytest.approx(55 / 15, abs=0.01)
    # Paced chunks: the first bytes arrive well before the last ones.
    assert len(arrivals) > 5 and arrivals[-1] - arrivals[0] > 0.1


@pytest.mark.parametrize(
    ("response_format", "content_type", "magic"),
    [("mp3", "audio/mpeg", b"\xff\xfb"), ("pcm", "audio/pcm", b""), ("flac", "audio/flac", b"fLaC")],
)
def test_speech_formats(client: openai.OpenAI, response_format: str, content_type: str, magic: bytes) -> None:
    response = client.audio.speech.with_raw_response.create(
        model="gpt-4o-mini-tts",
        voice="coral",
        input="short",
        response_format=response_format,  # type: ignore[arg-type]
    )
    assert response.headers["content-type"] == content_type
    audio = response.http_response.content
    assert audio.startswith(magic) and len(audio) > 4096
    if response_format == "mp3":
        # Whole MPEG frames of 417 bytes, each starting with a frame header.
        assert len(audio) % 417 == 0 and all(audio[i : i + 2] == b"\xff\xfb" for i in range(0, len(audio), 417))
    if response_format == "pcm":
        assert len(audio) == 24_000 * 2  # one second (the minimum) of 24 kHz 16-bit mono


def test_speech_sse_stream(upstream: str) -> None:
    with httpx.stream(
        "POST",
        upstream + "/v1/audio/speech",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "gpt-4o-mini-tts", "voice": "alloy", "input": "hi", "stream_format": "sse"},
    ) as response:
        events = [orjson.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert audio.startswith(b"\xff\xfb")
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["input_tokens"] == 1


def test_speech_rejects_an_unknown_format(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="tts-1", voice="alloy", input="x", response_format="ogg")  # type: ignore[arg-type]
    assert caught.value.param == "response_format"


def test_transcription_json_with_token_usage(client: openai.OpenAI) -> None:
    audio = _wav(2.0)
    result = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("meeting.wav", audio), prompt="hi")
    assert result.text == f"Transcribed {len(audio)} bytes of meeting.wav."
    usage = result.usage
    assert usage is not None and usage.type == "tokens"
    assert usage.input_token_details is not None and usage.input_token_details.audio_tokens == 20
    assert usage.input_token_details.text_tokens == 1
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


async def test_async_transcription_whisper_duration_usage(async_client: openai.AsyncOpenAI) -> None:
    result = await async_client.audio.transcriptions.create(model="whisper-1", file=("a.wav", _wav(2.5)))
    assert result.usage is not None and result.usage.type == "duration" and result.usage.seconds == 3


def test_transcription_of_a_large_upload_from_a_file(client: openai.OpenAI, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "long.mp3"
    path.write_bytes(b"\x00" * (3 * 1024 * 1024))
    with path.open("rb") as handle:
        result = client.audio.transcriptions.create(model="whisper-1", file=handle, response_format="verbose_json")
    assert result.text == f"Transcribed {3 * 1024 * 1024} bytes of long.mp3."
    assert result.duration == pytest.approx(3 * 1024 * 1024 / 16_000, abs=0.01)


def test_transcription_verbose_json_with_words(client: openai.OpenAI) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", _wav(1.0)),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="de",
    )
    assert result.language == "german" and result.duration == 1.0
    assert result.words is not None and [w.word for w in result.words] == result.text.split()
    assert result.words[-1].end == pytest.approx(1.0)
    assert result.segments is not None and result.segments[0].end == 1.0


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ("text", "Transcribed 32044 bytes of a.wav.\n"),
        ("srt", "1\n00:00:00,000 --> 00:00:01,000\nTranscribed 32044 bytes of a.wav.\n\n"),
        ("vtt", "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nTranscribed 32044 bytes of a.wav.\n\n"),
    ],
)
def test_transcription_text_formats(client: openai.OpenAI, response_format: str, expected: str) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", _wav(1.0)),
        response_format=response_format,  # type: ignore[arg-type]
    )
    assert result == expected


def test_gpt4o_transcription_refuses_whisper_only_formats(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.wav", b"x"), response_format="srt")
    assert caught.value.param == "response_format"


def test_transcription_stream(client: openai.OpenAI) -> None:
    events = list(
        client.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=("a.mp3", b"x" * 1000), stream=True)
    )
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = events[-1]
    assert done.type == "transcript.text.done"
    assert "".join(deltas) == done.text == "Transcribed 1000 bytes of a.mp3."
    assert done.usage is not None and done.usage.output_tokens == 8


def test_translation(client: openai.OpenAI) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK marks translations deprecated; OpenAI serves them
        result = client.audio.translations.create(model="whisper-1", file=("speech.mp3", b"y" * 500))
        verbose = client.audio.translations.create(
            model="whisper-1", file=("speech.mp3", b"y" * 16_000), response_format="verbose_json"
        )
    assert result.text == "Translated 500 bytes of speech.mp3."
    assert verbose.duration == 1.0 and verbose.segments is not None


def test_transcription_needs_multipart_and_a_file(upstream: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    as_json = httpx.post(upstream + "/v1/audio/transcriptions", headers=headers, json={"model": "whisper-1"})
    assert as_json.status_code == 400 and "multipart/form-data" in as_json.json()["error"]["message"]
    no_file = httpx.post(upstream + "/v1/audio/transcriptions", headers=headers, files={"model": (None, "whisper-1")})
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
