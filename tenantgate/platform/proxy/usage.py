"""Reading usage (and response id, model, finish reasons) out of upstream answers without re-parsing twice.

Non-streamed bodies are parsed once; very large ones (e.g. many embeddings) only around their ``usage`` key.
Streams are scanned event by event (``sse.py``) and only the few events that carry usage or metadata are parsed.
When the upstream never reported usage, input and delivered output are estimated with tiktoken and flagged.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import orjson

from tenantgate import tokens
from tenantgate.core.exchange import NO_TOOL_CALLS, Exchange, ToolCalls, Usage

_FULL_PARSE_LIMIT = 256 * 1024
_AUDIO_TEXT_PATHS = frozenset({"/v1/audio/transcriptions", "/v1/audio/translations"})
_IMAGE_UPLOAD_PATHS = frozenset({"/v1/images/edits", "/v1/images/variations"})
_IMAGE_ITEM = re.compile(rb'"(?:b64_json|url)"\s*:\s*"')


def record_json_answer(exchange: Exchange, body: bytes) -> None:
    """Usage and metadata of a successful non-streamed answer; estimated (and flagged) if it carries no usage."""
    if exchange.path in _AUDIO_TEXT_PATHS and body[:64].lstrip()[:1] != b"{":
        record_transcript_text(exchange, body)
        return
    if len(body) <= _FULL_PARSE_LIMIT:
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        if isinstance(answer, dict):
            record_answer_object(exchange, answer)
            if exchange.usage is None and exchange.payload is not None and exchange.model_work:
                estimate_usage(exchange, _answer_text(answer))
        return
    if exchange.path in _IMAGE_UPLOAD_PATHS:
        exchange.quantity = len(_IMAGE_ITEM.findall(body))  # pictures as b64_json (what makes an answer this big)
    usage = _usage_near_end(body)
    if usage is not None:
        exchange.usage = usage
        exchange.usage_source = "upstream"
    elif exchange.payload is not None:
        estimate_usage(exchange, "")


def record_stored_answer(exchange: Exchange, body: bytes) -> None:
    """A read of a stored object: nothing to bill, unless it shows a background response's final usage for the
    first time (see ``_background``)."""
    if b'"background":true' not in body and b'"background": true' not in body:
        return
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    if isinstance(answer, dict):
        record_answer_object(exchange, answer)


def _answer_text(answer: dict[str, Any]) -> str:
    """The generated text of a chat completion, completion or Responses API answer (for estimates)."""
    parts: list[str] = []
    for choice in answer.get("choices") or ():
        if isinstance(choice, dict):
            message = choice.get("message")
            content = message.get("content") if isinstance(message, dict) else choice.get("text")
            if isinstance(content, str):
                parts.append(content)
    for item in answer.get("output") or ():
        for part in (item.get("content") or ()) if isinstance(item, dict) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
    return "".join(parts)


def record_answer_object(exchange: Exchange, answer: dict[str, Any]) -> None:
    """A chat completion, completion, embedding list or Responses API ``response`` object."""
    if exchange.capture_output:
        exchange.output = answer.get("choices", answer.get("output"))
    response_id = answer.get("id")
    if isinstance(response_id, str):
        exchange.response_id = response_id
    model = answer.get("model")
    if isinstance(model, str):
        exchange.response_model = model
    choices = answer.get("choices")
    if isinstance(choices, list):
        exchange.finish_reasons = [
            c["finish_reason"] for c in choices if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
        ]
        exchange.audio_ids = audio_ids_of(choices, "message")
    status = answer.get("status")
    if answer.get("object") == "response":
        if isinstance(status, str):
            exchange.finish_reasons = [status]
        if answer.get("background") is True:
            _background(exchange, answer, status)
    if answer.get("object") in _RESPONSE_OBJECTS:
        output = answer.get("output")
        if isinstance(output, list):
            exchange.output_item_ids = [
                item["id"] for item in output if isinstance(item, dict) and isinstance(item.get("id"), str)
            ]
    if not exchange.model_work:
        return  # a read of a stored object: its usage was billed when it was made
    if answer.get("object") == "response":
        count_tool_calls(exchange, answer.get("output"))
    reported = answer.get("usage")
    usage = Usage.from_openai(reported)
    if usage is not None:
        exchange.usage = usage
        exchange.usage_source = "upstream"
    # Audio billed by the second: whisper's usage says {"type": "duration", "seconds": n}; verbose_json answers
    # (translations too) carry the audio's ``duration``.
    seconds = reported.get("seconds") if isinstance(reported, dict) and reported.get("type") == "duration" else None
    if seconds is None and exchange.path in _AUDIO_TEXT_PATHS:
        seconds = answer.get("duration")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 <= seconds < 1e9:
        exchange.quantity = math.ceil(seconds)
    elif exchange.path in _AUDIO_TEXT_PATHS and exchange.usage is None:
        _measure_upload(exchange)  # a whisper-1 ``json`` translation: no usage, no duration
    # An image upload's form is not read for ``n``: the pictures are counted in the answer.
    if exchange.path in _IMAGE_UPLOAD_PATHS and isinstance(answer.get("data"), list):
        exchange.quantity = len(answer["data"])


# A transcript as subtitles: SRT starts with its first cue's number and timing, WebVTT with "WEBVTT".
_SRT_START = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*\d+[ \t]*\r?\n[ \t]*\d+:\d{2}:\d{2},\d{3}[ \t]+-->")
_VTT_START = re.compile(rb"\A(?:\xef\xbb\xbf)?WEBVTT\b")
_CUE_END = re.compile(rb"-->[ \t]*(?:(\d{1,6}):)?(\d{1,2}):(\d{2})[.,](\d{3})")


def subtitle_seconds(body: bytes) -> float | None:
    """When the last cue of an SRT or WebVTT transcript ends; None for any other text. The audio is at least as
    long (it may go on, silent, after the last word)."""
    if not (_SRT_START.match(body) or _VTT_START.match(body)):
        return None
    ends = [
        int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000
        for hours, minutes, seconds, millis in _CUE_END.findall(body)
    ]
    return max(ends) if ends else None


def record_transcript_text(exchange: Exchange, body: bytes) -> None:
    """A transcription or translation answered as text (``text``, ``srt``, ``vtt``): no usage, no duration.

    Subtitles say when their last cue ends, a lower bound of the audio's length: the seconds are billed from it,
    flagged as estimated. A plain text answer says nothing of the audio's length: the upload's is measured instead
    (``_measure_upload``)."""
    seconds = subtitle_seconds(body)
    if seconds is None:
        _measure_upload(exchange)
        return
    exchange.quantity = math.ceil(seconds)
    exchange.usage = Usage()
    exchange.usage_source = "estimated"


def _measure_upload(exchange: Exchange) -> None:
    """Seconds of audio from the upload itself (proxy/audio_length.py: exact for WAV, else a lower bound), flagged
    as estimated, for an answer that does not say. Priced for a model sold by the second; a model sold by audio
    tokens is still stored unpriced (an estimate of its tokens is not made)."""
    measure = exchange.upload_seconds
    seconds = measure() if measure is not None else None
    if seconds is None:
        return
    exchange.quantity = math.ceil(seconds)
    exchange.usage = Usage()
    exchange.usage_source = "estimated"


_PCM_BYTES_PER_SECOND = 24_000 * 2
"""OpenAI's ``pcm`` speech: raw 24 kHz, 16-bit, mono samples."""
SPEECH_AUDIO_TOKENS_PER_MINUTE = 1250
"""Audio tokens a minute of gpt-4o-mini-tts speech takes, from OpenAI's own estimate of its price (about $0.015 a
minute at $12.00 per 1M audio output tokens)."""
_SOLD_BY_CHARACTER = re.compile(r"tts-1(?:-hd)?(?:-\d{4})?")
"""Speech models priced by the characters of their input, which need no estimate of the audio."""


def speech_seconds(response_format: str, head: bytes, size: int) -> float | None:
    """The length of a speech answer of ``size`` bytes beginning with ``head``, when its format tells it without
    decoding: ``pcm`` (24 kHz 16-bit mono), ``wav`` (its header's byte rate); None for compressed formats."""
    if response_format == "pcm":
        return size / _PCM_BYTES_PER_SECOND
    if response_format != "wav" or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, byte_rate = 12, 0
    while offset + 8 <= len(head):
        chunk, length = head[offset : offset + 4], int.from_bytes(head[offset + 4 : offset + 8], "little")
        if chunk == b"fmt " and offset + 20 <= len(head):
            byte_rate = int.from_bytes(head[offset + 16 : offset + 20], "little")
        elif chunk == b"data":
            # A streamed WAV's header may not know its data's size: the bytes that came are the data.
            return max(0, size - offset - 8) / byte_rate if byte_rate else None
        offset += 8 + length + (length & 1)
    return None


def record_speech_audio(exchange: Exchange, head: bytes, size: int) -> None:
    """A speech answer sent as plain audio (not ``stream_format: "sse"``) reports no usage. Where the audio's length
    can be read from its format, its usage is estimated and flagged: the input tokens of its text (``input``,
    ``instructions``), and the audio output tokens of its length. Compressed audio stays without usage."""
    payload = exchange.payload
    model = exchange.upstream_model or exchange.model or ""
    if exchange.usage is not None or not payload or _SOLD_BY_CHARACTER.fullmatch(model):
        return
    response_format = payload.get("response_format") or "mp3"
    seconds = speech_seconds(response_format, head, size) if isinstance(response_format, str) else None
    if seconds is None:
        return
    audio = math.ceil(seconds * SPEECH_AUDIO_TOKENS_PER_MINUTE / 60)
    prompt = tokens.estimate_prompt_tokens(payload, model)
    exchange.usage = Usage(input_tokens=prompt, output_tokens=audio, output_audio_tokens=audio)
    exchange.usage_source = "estimated"


def audio_ids_of(choices: list[Any], part: str) -> list[str]:
    """The ids of the audio in a chat answer's choices (``part``: ``message``, or ``delta`` in a stream's chunk)."""
    ids: list[str] = []
    for choice in choices:
        said = choice.get(part) if isinstance(choice, dict) else None
        audio = said.get("audio") if isinstance(said, dict) else None
        if isinstance(audio, dict) and isinstance(audio.get("id"), str):
            ids.append(audio["id"])
    return ids


def count_tool_calls(exchange: Exchange, output: Any) -> None:
    """The billed hosted-tool work of a response (``tool_calls_of``). Only the final response is counted (its
    terminal event, a non-streamed answer, or a background response's completion), so each call is counted once."""
    exchange.tools = tool_calls_of(output)


def tool_calls_of(output: Any) -> ToolCalls:
    """The billed hosted-tool work in a response's output: one web or file search per call item, one code
    interpreter session per container its calls ran in."""
    if not isinstance(output, list):
        return NO_TOOL_CALLS
    web = files = 0
    containers: set[str] = set()
    for item in output:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "web_search_call":
            web += 1
        elif kind == "file_search_call":
            files += 1
        elif kind == "code_interpreter_call":
            container = item.get("container_id")
            containers.add(container if isinstance(container, str) else str(item.get("id")))
    return ToolCalls(web, files, len(containers))


_RESPONSE_OBJECTS = frozenset({"response", "response.compaction"})
"""Answers whose output items are stored upstream (and may be named later by id): owned like the response."""
_TERMINAL = frozenset({"completed", "failed", "incomplete", "cancelled"})


def _background(exchange: Exchange, answer: dict[str, Any], status: object) -> None:
    """A background response is billed once, when its final usage is first seen: on its create stream or on a
    retrieve. Its create is model work not yet done (nothing billable); its completion has one event id, so every
    later sighting (retrieves, cancels) is the same event and the store keeps it once."""
    response_id = answer.get("id")
    if status in _TERMINAL and isinstance(response_id, str) and isinstance(answer.get("usage"), dict):
        exchange.event_id = completion_event_id(response_id)
        if isinstance(answer.get("model"), str) and not exchange.model_work:
            exchange.model = answer["model"]
        exchange.model_work = True
    else:
        exchange.model_work = False


def completion_event_id(response_id: str) -> str:
    return "evt_bg" + hashlib.sha256(b"response:" + response_id.encode()).hexdigest()[:32]


def _usage_near_end(body: bytes) -> Usage | None:
    start = body.rfind(b'"usage"')
    if start < 0:
        return None
    brace = body.find(b"{", start)
    if brace < 0:
        return None
    depth = 0
    for index in range(brace, len(body)):
        byte = body[index]
        if byte == 0x7B:
            depth += 1
        elif byte == 0x7D:
            depth -= 1
            if depth == 0:
                try:
                    return Usage.from_openai(orjson.loads(body[brace : index + 1]))
                except orjson.JSONDecodeError:
                    return None
    return None


_OUTPUT_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def estimate_usage(exchange: Exchange, output_text: str, reasoning_tokens: int = 0) -> None:
    """Fill in usage the upstream never reported (client gone, stream broken), flagged as estimated.

    Reasoning is part of the output, as OpenAI counts it; neither exceeds the output cap the request set."""
    if exchange.usage is not None:
        return
    model = exchange.upstream_model or exchange.model
    payload = exchange.payload
    prompt = tokens.estimate_prompt_tokens(payload, model) if payload else 0
    output = tokens.count_text(output_text, model) + reasoning_tokens
    cap = _output_cap(payload) if payload else None
    if cap is not None:
        output, reasoning_tokens = min(output, cap), min(reasoning_tokens, cap)
    exchange.usage = Usage(input_tokens=prompt, output_tokens=output, reasoning_tokens=reasoning_tokens)
    exchange.usage_source = "estimated"


def _output_cap(payload: dict[str, Any]) -> int | None:
    caps = [
        c
        for c in (payload.get(name) for name in _OUTPUT_CAPS)
        if isinstance(c, int) and not isinstance(c, bool) and c > 0
    ]
    return min(caps) if caps else None
