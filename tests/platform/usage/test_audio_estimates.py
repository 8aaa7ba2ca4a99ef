"""Audio answers that report no usage: subtitles billed from their last cue, plain speech audio from its length.

whisper-1's ``srt``/``vtt`` answers carry neither usage nor duration, only cue times; gpt-4o-mini-tts answers sent as
plain audio carry no usage. Where the answer tells the audio's length (a lower bound for subtitles), the event is
priced from it and flagged ``estimated``; where it does not (``text``, compressed audio), it stays unpriced.
"""

from __future__ import annotations

import math
import re
import struct
from decimal import Decimal
from typing import Any

import pytest

from tenantgate.platform.proxy.usage import SPEECH_AUDIO_TOKENS_PER_MINUTE, speech_seconds, subtitle_seconds
from tests.platform.usage.test_audio_seconds import _wav
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush

WHISPER_PER_SECOND = Decimal("0.006") / 60
TEXT = "The gateway bills what it can measure, and says when it measured less than all. " * 2
_CUE_END = re.compile(r"--> (?:(\d+):)?(\d+):(\d+)[.,](\d+)")


def _event(gateway: Gateway, tenant_id: str, request_id: str) -> dict[str, Any]:
    flush(gateway)
    (event,) = [e for e in all_events(gateway, tenant_id=tenant_id) if e["request_id"] == request_id]
    return event


def _last_cue_end(document: str) -> float:
    """The test's own reading of the subtitles the client got."""
    ends = [int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in _CUE_END.findall(document)]
    return max(ends)


@pytest.mark.parametrize("response_format", ["srt", "vtt"])
@pytest.mark.parametrize("kind", ["transcriptions", "translations"])
def test_subtitles_are_billed_from_their_last_cue_and_flagged_estimated(
    gateway: Gateway, response_format: str, kind: str
) -> None:
    created = gateway.new_key()
    client = gateway.client(created["key"])
    endpoint = getattr(client.audio, kind).with_raw_response
    raw = endpoint.create(model="whisper-1", file=("a.wav", _wav(2.2)), response_format=response_format)
    document = raw.parse()
    assert isinstance(document, str) and "-->" in document

    event = _event(gateway, created["tenant_id"], raw.headers["x-request-id"])
    seconds = math.ceil(_last_cue_end(document))
    assert seconds == 3  # 2.2 s of audio, rounded up to the second
    assert (event["quantity"], event["usage_source"], event["unpriced"]) == (seconds, "estimated", None)
    assert Decimal(event["cost_usd"]) == seconds * WHISPER_PER_SECOND  # $0.006 a minute: $0.0001 a second


def test_a_plain_text_transcript_says_nothing_of_its_length_and_stays_unpriced(gateway: Gateway) -> None:
    created = gateway.new_key()
    raw = gateway.client(created["key"]).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", _wav(2.2)), response_format="text"
    )
    assert isinstance(raw.parse(), str)
    event = _event(gateway, created["tenant_id"], raw.headers["x-request-id"])
    assert (event["billable"], event["quantity"], event["unpriced"], event["cost_usd"]) == (True, 0, "usage", None)


@pytest.mark.parametrize("response_format", ["pcm", "wav"])
def test_plain_speech_audio_is_priced_from_its_length_and_flagged_estimated(
    gateway: Gateway, response_format: str
) -> None:
    created = gateway.new_key()
    raw = gateway.client(created["key"]).audio.speech.with_raw_response.create(
        model="gpt-4o-mini-tts",
        voice="alloy",
        input=TEXT,
        response_format=response_format,  # type: ignore[arg-type]
    )
    audio = raw.parse().content
    # The test's own measure of what the client got: 24 kHz 16-bit mono, after a WAV's 44-byte header.
    if response_format == "wav":
        assert audio[:4] == b"RIFF" and struct.unpack("<I", audio[28:32])[0] == 48_000
        audio = audio[44:]
    audio_tokens = math.ceil(len(audio) / 48_000 * 1250 / 60)

    event = _event(gateway, created["tenant_id"], raw.headers["x-request-id"])
    assert (event["usage_source"], event["unpriced"]) == ("estimated", None)
    assert event["output_tokens"] == event["output_audio_tokens"] == audio_tokens > 0
    assert 0 < event["input_tokens"] < len(TEXT)  # the text's tokens, estimated
    # gpt-4o-mini-tts: $0.60 per 1M text input tokens, $12.00 per 1M audio output tokens.
    usd = (event["input_tokens"] * Decimal("0.60") + audio_tokens * Decimal(12)) / 1_000_000
    assert abs(Decimal(event["cost_usd"]) - usd) <= Decimal("2e-9")


def test_compressed_speech_and_speech_sold_by_the_character_are_not_estimated(gateway: Gateway) -> None:
    created = gateway.new_key()
    speech = gateway.client(created["key"]).audio.speech.with_raw_response
    mp3 = speech.create(model="gpt-4o-mini-tts", voice="alloy", input=TEXT)
    assert mp3.parse().content
    by_character = speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="pcm")
    assert by_character.parse().content

    unread = _event(gateway, created["tenant_id"], mp3.headers["x-request-id"])
    assert (unread["usage_source"], unread["unpriced"], unread["cost_usd"]) == (None, "usage", None)
    tts = _event(gateway, created["tenant_id"], by_character.headers["x-request-id"])
    assert (tts["usage_source"], tts["quantity"], tts["unpriced"]) == (None, len(TEXT), None)
    assert Decimal(tts["cost_usd"]) == len(TEXT) * Decimal("15.00") / 1_000_000


def test_subtitle_seconds_reads_the_last_cue_of_srt_and_webvtt_only() -> None:
    srt = b"1\r\n00:00:00,000 --> 00:00:04,500\r\nHello\r\n\r\n2\r\n01:02:03,250 --> 01:02:09,999\r\nBye\r\n"
    assert subtitle_seconds(srt) == pytest.approx(3729.999)
    vtt = b"\xef\xbb\xbfWEBVTT\n\n00:01.000 --> 00:07.250\nHi\n\n00:07.250 --> 00:05.000\nout of order\n"
    assert subtitle_seconds(vtt) == pytest.approx(7.25)
    # A plain transcript that happens to contain an arrow and a time is not subtitles.
    assert subtitle_seconds(b"He said 00:00:09,000 --> 00:01:00,000 twice.") is None
    assert subtitle_seconds(b"WEBVTT\n\n") is None


def test_speech_seconds_reads_pcm_and_wav_headers_and_nothing_compressed() -> None:
    assert speech_seconds("pcm", b"\x00\x00", 96_000) == 2.0
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 24_000, 48_000, 2, 16)
    listing = b"LIST" + struct.pack("<I", 5) + b"INFO!" + b"\x00"  # an odd-sized chunk, padded
    streamed = b"RIFF" + b"\xff\xff\xff\xff" + b"WAVE" + fmt + listing + b"data" + b"\xff\xff\xff\xff"
    assert speech_seconds("wav", streamed, len(streamed) + 24_000) == 0.5
    assert speech_seconds("wav", b"ID3" + bytes(60), 10_000) is None
    for compressed in ("mp3", "opus", "aac", "flac"):
        assert speech_seconds(compressed, b"\xff\xfb" + bytes(60), 10_000) is None
    assert SPEECH_AUDIO_TOKENS_PER_MINUTE == 1250
