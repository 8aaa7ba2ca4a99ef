"""Speech (binary audio streamed in chunks, or SSE), transcriptions and translations (multipart uploads).

Speech: ``mp3`` (silent MPEG frames), ``wav`` and ``pcm`` (a quiet 400 Hz tone, 24 kHz 16-bit mono) are real,
decodable audio; ``opus``, ``aac`` and ``flac`` carry the right content type and leading magic bytes around PCM data,
and are not decodable. The length follows the input text (about 15 characters a second, at least one second).
"""

from __future__ import annotations

import base64
import math
import struct
from functools import cache
from typing import Any

from tenantgate.devupstream.multipart import Upload, read_upload
from tenantgate.devupstream.wire import ApiError, Call, count_tokens, pieces, require, require_model

CHUNK_BYTES = 4096
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
_RATE = 24_000
_CONTENT_TYPES = {
    "mp3": b"audio/mpeg",
    "opus": b"audio/opus",
    "aac": b"audio/aac",
    "flac": b"audio/flac",
    "wav": b"audio/wav",
    "pcm": b"audio/pcm",
}
# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono: 417-byte frames of 26.1 ms; all-zero side info decodes as silence.
_MP3_FRAME = b"\xff\xfb\x90\xc4" + bytes(413)
_MP3_FRAME_SECONDS = 1152 / 44_100
_MAGIC = {"opus": b"OggS\x00\x02", "aac": b"\xff\xf1\x50\x80", "flac": b"fLaC\x00\x00\x00\x22"}


@cache
def _tone_period() -> bytes:
    samples = _RATE // 400
    return b"".join(struct.pack("<h", round(2000 * math.sin(2 * math.pi * i / samples))) for i in range(samples))


def _pcm(seconds: float) -> bytes:
    size = int(_RATE * seconds) * 2
    period = _tone_period()
    return (period * (size // len(period) + 1))[:size]


def wav_header(data_size: int, rate: int = _RATE) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


def synthesize(text: str, response_format: str) -> bytes:
    seconds = max(1.0, len(text) / 15)
    if response_format == "mp3":
        return _MP3_FRAME * math.ceil(seconds / _MP3_FRAME_SECONDS)
    pcm = _pcm(seconds)
    if response_format == "wav":
        return wav_header(len(pcm)) + pcm
    return _MAGIC.get(response_format, b"") + pcm


async def speech(call: Call, payload: dict[str, Any]) -> None:
    require_model(payload)
    text = require(payload, "input")
    require(payload, "voice")
    if not isinstance(text, str) or len(text) > 4096:
        raise ApiError(400, "Invalid 'input': expected a string of at most 4096 characters.", param="input")
    response_format = payload.get("response_format") or "mp3"
    if response_format not in _CONTENT_TYPES:
        raise ApiError(
            400,
            f"Invalid value: '{response_format}'. Supported values are: 'mp3', 'opus', 'aac', 'flac', 'wav', and "
            "'pcm'.",
            code="invalid_value",
            param="response_format",
        )
    audio = synthesize(text, response_format)
    chunks = [audio[i : i + CHUNK_BYTES] for i in range(0, len(audio), CHUNK_BYTES)]
    input_tokens = count_tokens(text)
    if payload.get("stream_format") == "sse":
        await call.open_stream(tokens=input_tokens)
        for chunk in chunks:
            await call.pace()
            await call.sse({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()})
        output_tokens = math.ceil(len(text) / 15 * 20)
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
        await call.sse({"type": "speech.audio.done", "usage": usage})
        await call.end()
        return
    # No content-length: the audio goes out with chunked transfer encoding as it is "generated".
    await call.open_stream(_CONTENT_TYPES[response_format], tokens=input_tokens)
    for chunk in chunks:
        await call.pace()
        await call.chunk(chunk)
    await call.end()


def _duration(upload: Upload) -> float:
    """Seconds of audio: from a WAV header when there is one, else as if it were 128 kbit/s mp3."""
    head = upload.file_head
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE" and len(head) >= 44:
        byte_rate: int = struct.unpack("<I", head[28:32])[0]
        if byte_rate:
            return round(max(0, upload.file_size - 44) / byte_rate, 3)
    return round(upload.file_size / 16_000, 3)


_LANGUAGES = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "ja": "japanese"}
_WHISPER_ONLY = ("verbose_json", "srt", "vtt")


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _segment(text: str, duration: float) -> dict[str, Any]:
    return {
        "id": 0,
        "seek": 0,
        "start": 0.0,
        "end": duration,
        "text": " " + text,
        "tokens": [50364 + i for i in range(count_tokens(text))],
        "temperature": 0.0,
        "avg_logprob": -0.25,
        "compression_ratio": 1.2,
        "no_speech_prob": 0.01,
    }


def _words(text: str, duration: float) -> list[dict[str, Any]]:
    words = text.split()
    step = duration / max(1, len(words))
    return [{"word": w, "start": round(i * step, 3), "end": round((i + 1) * step, 3)} for i, w in enumerate(words)]


async def transcribe(call: Call, task: str) -> None:
    """``/audio/transcriptions`` (task ``transcribe``) and ``/audio/translations`` (task ``translate``)."""
    upload = await read_upload(call.scope, call.receive, MAX_UPLOAD_BYTES)
    model = upload.get("model")
    if not model:
        raise ApiError(400, "you must provide a model parameter")
    if upload.filename is None:
        raise ApiError(400, "Missing required parameter: 'file'.", code="missing_required_parameter", param="file")
    response_format = upload.get("response_format") or "json"
    if response_format not in ("json", "text", *_WHISPER_ONLY):
        raise ApiError(400, f"Invalid value: '{response_format}'.", code="invalid_value", param="response_format")
    whisper = model.startswith("whisper")
    if not whisper and response_format in _WHISPER_ONLY:
        raise ApiError(
            400,
            f"response_format '{response_format}' is not compatible with model '{model}'. Use 'json' or 'text' "
            "instead.",
            code="unsupported_value",
            param="response_format",
        )
    verb = "Transcribed" if task == "transcribe" else "Translated"
    text = f"{verb} {upload.file_size} bytes of {upload.filename}."
    duration = _duration(upload)
    prompt_tokens = count_tokens(upload.get("prompt") or "")
    audio_tokens = math.ceil(duration * 10)
    output_tokens = count_tokens(text)
    usage: dict[str, Any] = (
        {"type": "duration", "seconds": math.ceil(duration)}
        if whisper
        else {
            "type": "tokens",
            "input_tokens": audio_tokens + prompt_tokens,
            "input_token_details": {"text_tokens": prompt_tokens, "audio_tokens": audio_tokens},
            "output_tokens": output_tokens,
            "total_tokens": audio_tokens + prompt_tokens + output_tokens,
        }
    )
    # Only the gpt-4o transcription models stream; whisper-1 ignores ``stream``, as on OpenAI.
    if task == "transcribe" and not whisper and (upload.get("stream") or "").lower() == "true":
        await call.open_stream(tokens=audio_tokens)
        for piece in pieces(text):
            await call.pace()
            await call.sse({"type": "transcript.text.delta", "delta": piece, "logprobs": []})
        await call.sse({"type": "transcript.text.done", "text": text, "logprobs": [], "usage": usage})
        await call.end()
        return
    await call.pace(output_tokens)
    if response_format == "json":
        await call.json(200, {"text": text, "usage": usage} if task == "transcribe" else {"text": text})
    elif response_format == "verbose_json":
        body: dict[str, Any] = {
            "task": task,
            "language": _LANGUAGES.get(upload.get("language") or "en", "english"),
            "duration": duration,
            "text": text,
        }
        granularities = upload.all("timestamp_granularities") or ["segment"]
        if "word" in granularities and task == "transcribe":
            body["words"] = _words(text, duration)
        if "segment" in granularities:
            body["segments"] = [_segment(text, duration)]
        if task == "transcribe":
            body["usage"] = usage
        await call.json(200, body)
    elif response_format == "text":
        await call.body(200, b"text/plain; charset=utf-8", text.encode() + b"\n")
    else:
        separator, header = (",", "1\n") if response_format == "srt" else (".", "")
        cue = f"{header}{_timestamp(0, separator)} --> {_timestamp(duration, separator)}\n{text}\n\n"
        document = cue if response_format == "srt" else "WEBVTT\n\n" + cue
        await call.body(200, b"text/plain; charset=utf-8", document.encode())
