"""Audio answers that report no usage: subtitles billed from their last cue, plain speech audio from its length.

whisper-1's ``srt``/``vtt`` answers carry neither usage nor duration, only cue times; gpt-4o-mini-tts answers sent as
plain audio carry no usage. Where the answer tells the audio's length (a lower bound for subtitles), the event is
priced from it and flagged ``estimated``; where it does not (``text``, a ``json`` translation), the uploaded
audio's length is (exact for WAV, a lower bound for compressed containers), flagged the same way; compressed speech
stays unpriced.
"""

from __future__ import annotations

import io
import math
import re
import struct
import wave
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantgate.platform.proxy.audio_length import audio_seconds, file_part_head
from tenantgate.platform.proxy.usage import SPEECH_AUDIO_TOKENS_PER_MINUTE, speech_seconds, subtitle_seconds
from tenantgate.tenants.limits.outputs import audio_seconds as most_seconds
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


@pytest.mark.parametrize(
    ("kind", "response_format"), [("transcriptions", "text"), ("translations", "text"), ("translations", "json")]
)
def test_an_answer_without_its_length_is_billed_from_the_uploaded_wav_and_flagged_estimated(
    gateway: Gateway, kind: str, response_format: str
) -> None:
    """whisper-1 ``text`` transcripts and ``json``/``text`` translations say nothing of the audio's length: the
    uploaded WAV's header and data do, exactly."""
    created = gateway.new_key()
    endpoint = getattr(gateway.client(created["key"]).audio, kind).with_raw_response
    raw = endpoint.create(model="whisper-1", file=("a.wav", _wav(2.2)), response_format=response_format)
    assert raw.parse()
    event = _event(gateway, created["tenant_id"], raw.headers["x-request-id"])
    assert (event["billable"], event["quantity"], event["usage_source"], event["unpriced"]) == (
        True, 3, "estimated", None,
    )  # fmt: skip
    assert Decimal(event["cost_usd"]) == 3 * WHISPER_PER_SECOND


def test_a_compressed_upload_is_billed_a_lower_bound_of_its_length(gateway: Gateway) -> None:
    """Without a WAV header the length is its bytes at the container's highest common bitrate (MP3: 320 kbit/s), so
    the seconds billed are never more than the audio holds; still flagged estimated, never $0."""
    created = gateway.new_key()
    mp3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(200_000)
    raw = gateway.client(created["key"]).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.mp3", mp3), response_format="text"
    )
    assert raw.parse()
    event = _event(gateway, created["tenant_id"], raw.headers["x-request-id"])
    assert (event["quantity"], event["usage_source"], event["unpriced"]) == (
        math.ceil(len(mp3) / 40_000), "estimated", None,
    )  # fmt: skip


def test_a_gpt_4o_text_transcript_is_not_priced_from_seconds(gateway: Gateway) -> None:
    """A model sold by audio tokens is not priced from the upload's seconds: its text answer stays unpriced."""
    created = gateway.new_key()
    raw = gateway.client(created["key"]).audio.transcriptions.with_raw_response.create(
        model="gpt-4o-transcribe", file=("a.wav", _wav(2.2)), response_format="text"
    )
    assert raw.parse()
    event = _event(gateway, created["tenant_id"], raw.headers["x-request-id"])
    assert (event["billable"], event["unpriced"], event["cost_usd"]) == (True, "usage", None)


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


# The upload's length is read from caller-controlled bytes: generated headers and bodies, and what they may claim.
@settings(max_examples=300, deadline=None)
@given(head=st.binary(max_size=128), size=st.integers(min_value=0, max_value=30_000_000))
def test_an_uploads_seconds_never_exceed_what_admission_held_whatever_its_header_claims(head: bytes, size: int) -> None:
    seconds = audio_seconds(head, size)
    assert 0 <= seconds <= most_seconds(size)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([8_000, 16_000, 22_050, 24_000, 44_100, 48_000]),
    channels=st.integers(1, 2),
    width=st.sampled_from([1, 2, 3, 4]),
    frames=st.integers(1, 50_000),  # no frames declares a data size of 0: read as unknown, as a streamed WAV
    extra=st.binary(max_size=40),
)
def test_a_wavs_length_is_exact_from_its_header_and_data(
    rate: int, channels: int, width: int, frames: int, extra: bytes
) -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(bytes(frames * channels * width))
    data = buffer.getvalue() + extra  # bytes after the data chunk (trailing metadata) are not audio
    assert audio_seconds(data[:4096], len(data)) == pytest.approx(min(frames / rate, most_seconds(len(data))))


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(st.tuples(st.sampled_from(["model", "prompt", "x"]), st.text(max_size=300)), max_size=3),
    content=st.binary(max_size=5_000),
    boundary=st.text(st.sampled_from("abcXYZ0129-_'"), min_size=1, max_size=60),
)
def test_the_file_parts_head_is_what_the_form_parser_reads(
    before: list[tuple[str, str]], content: bytes, boundary: str
) -> None:
    fields = {name: value for name, value in before}  # one of each: the gateway refuses a repeated field
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
        for name, value in fields.items()
    ]
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'.encode()
    body = b"".join(parts) + part + content + f"\r\n--{boundary}--\r\n".encode()
    if f"\r\n--{boundary}".encode() in content:
        return  # a file holding its own boundary is another form (the upload's client never sends one)
    assert file_part_head(body, boundary.encode()) == content[:65_536]


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([8_000, 16_000, 44_100]),
    channels=st.integers(1, 2),
    width=st.sampled_from([1, 2]),
    frames=st.integers(1, 40_000),
    byte_rate=st.integers(0, 2**32 - 1),
    block_align=st.integers(0, 2**16 - 1),
)
def test_a_wav_header_lying_in_its_byte_rate_or_block_align_is_billed_what_a_decoder_plays(
    rate: int, channels: int, width: int, frames: int, byte_rate: int, block_align: int
) -> None:
    """An attacker's header: the byte rate and block align say the audio is short; the samples say otherwise. The
    seconds billed are what Python's own WAV decoder reads (frames at the sample rate), not what the header claims."""
    data = bytes(frames * channels * width)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, byte_rate, block_align, width * 8)
    wav = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    wav += b"data" + struct.pack("<I", len(data)) + data
    with wave.open(io.BytesIO(wav)) as decoded:
        heard = decoded.getnframes() / decoded.getframerate()
    assert audio_seconds(wav[:4096], len(wav)) == pytest.approx(min(heard, most_seconds(len(wav))))


@settings(max_examples=100, deadline=None)
@given(tag=st.sampled_from([2, 0x11, 0x55, 0x161]), byte_rate=st.integers(0, 2**32 - 1), size=st.integers(0, 10**7))
def test_compressed_audio_in_a_wav_is_never_billed_less_than_at_a_compressed_codecs_top_rate(
    tag: int, byte_rate: int, size: int
) -> None:
    fmt = struct.pack("<HHIIHH", tag, 1, 16_000, byte_rate, 1, 4)
    wav = b"RIFF\xff\xff\xff\xffWAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data\xff\xff\xff\xff"
    data = max(0, size - len(wav))
    assert audio_seconds(wav, size) >= min(data / 64_000, most_seconds(size))
