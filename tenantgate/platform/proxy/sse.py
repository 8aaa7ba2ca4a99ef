"""Server-sent event streams from the upstream: relayed as they arrive, scanned for usage on the way.

Events are forwarded whole, as soon as their terminating blank line arrives, so nothing waits for more than the
rest of its own event. Chat/completions streams: the gateway asked the upstream for ``include_usage``; when the
client did not, the usage-only chunk and the ``"usage":null`` fields it causes are removed, so the client sees
exactly what it asked for. Responses streams: usage comes with the terminal ``response.*`` event.
The end marker (``data: [DONE]``, or the Responses API's terminal event) is held back until the exchange is
settled (metered), so a client that saw its stream end is on record even if the process dies right then.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from tenantgate.core.exchange import Exchange, Usage
from tenantgate.platform.proxy.usage import audio_ids_of, record_answer_object

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_MAX_KEPT_FOR_ESTIMATE = 4 * 1024 * 1024
# The first token the client can see (text, a refusal, a tool call; not a reasoning summary): reasoning is over.
_VISIBLE = re.compile(rb'"(?:content|refusal|text)":\s*"[^"]|"tool_calls":\s*\[')
_VISIBLE_RESPONSES = re.compile(rb'"type":\s*"response\.(?:output_text|refusal|function_call_arguments)\.delta"')
# A chat stream's audio names its id in its first audio delta (OpenAI sends ``id`` first; an id sent later is not
# seen, and the tenant's later reference to it is refused, never another tenant's let through).
_AUDIO_ID = re.compile(rb'"audio":\s*\{\s*"id"')
_MAX_AUDIO_IDS = 128
_TERMINAL_RESPONSE_EVENTS = (
    b'"type":"response.completed"',
    b'"type":"response.incomplete"',
    b'"type":"response.failed"',
)


def _data_of(event: bytes) -> bytes:
    lines = [line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:")]
    return b"\n".join(lines)


def _loads(data: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class StreamScanner:
    def __init__(self, exchange: Exchange, *, strip_usage: bool) -> None:
        self.exchange = exchange
        self.strip_usage = strip_usage
        self.responses_api = exchange.operation == "responses"
        self._pending = b""
        self._held = b""
        self._seen_first = False
        self._kept: list[bytes] = []
        self._kept_size = 0
        self.visible_at: float | None = None
        """When the first visible token arrived (``time.perf_counter``): how long the model reasoned before it."""

    def feed(self, chunk: bytes) -> bytes:
        """The bytes that may go to the client now."""
        data = self._pending + chunk if self._pending else chunk
        if b"\r" in data or self.responses_api or self._held:
            return self._feed_each(data)
        # The common case, a chat/completions stream with LF line ends: split in C, and let the events that carry
        # nothing of interest (most of them: content deltas) through without looking closer.
        bodies = data.split(b"\n\n")
        self._pending = bodies.pop()
        out: list[bytes] = []
        usage = b'"usage":' if self.strip_usage else b'"usage":{'  # "usage":null matters only when stripped
        for body in bodies:
            if self.visible_at is None and _VISIBLE.search(body):
                self.visible_at = time.perf_counter()
            if self._seen_first and usage not in body and b'finish_reason":"' not in body and b"[DONE]" not in body:
                if self._kept_size < _MAX_KEPT_FOR_ESTIMATE:
                    self._kept.append(body)
                    self._kept_size += len(body)
                out.append(body)
                out.append(b"\n\n")
                continue
            kept = self._event(body + b"\n\n")
            if kept:
                out.append(self._hold_back(kept))
        return b"".join(out)

    def _feed_each(self, data: bytes) -> bytes:
        out: list[bytes] = []
        position = 0
        for match in _EVENT_END.finditer(data):
            event = data[position : match.end()]
            position = match.end()
            kept = self._event(event)
            if kept:
                out.append(self._hold_back(kept))
        self._pending = data[position:]
        return b"".join(out)

    def flush(self) -> bytes:
        """Whatever trailing bytes the upstream sent without a final blank line."""
        rest, self._pending = self._pending, b""
        kept = self._event(rest) if rest else b""
        return self._hold_back(kept) if kept else b""

    def _hold_back(self, event: bytes) -> bytes:
        """Keep the stream's end marker until ``release``; anything after it sends it along."""
        if self._held:
            event, self._held = self._held + event, b""
            return event
        if (b"[DONE]" in event and _data_of(event).strip() == b"[DONE]") or (
            self.responses_api and any(marker in event for marker in _TERMINAL_RESPONSE_EVENTS)
        ):
            self._held = event
            return b""
        return event

    def release(self) -> bytes:
        """The held end marker (``data: [DONE]`` or the Responses API's terminal event).

        It is sent only after ``hooks.settle``: a client that saw the end of its stream must already be metered.
        """
        held, self._held = self._held, b""
        return held

    def _event(self, event: bytes) -> bytes:
        if not self._seen_first and b"data:" in event:
            self._seen_first = True
            first = _loads(_data_of(event))
            if first is not None:
                self._metadata(first.get("response") if self.responses_api else first)
        if self._kept_size < _MAX_KEPT_FOR_ESTIMATE:
            self._kept.append(event)
            self._kept_size += len(event)
        if self.visible_at is None and (_VISIBLE_RESPONSES if self.responses_api else _VISIBLE).search(event):
            self.visible_at = time.perf_counter()
        if self.responses_api:
            if any(marker in event for marker in _TERMINAL_RESPONSE_EVENTS):
                terminal = _loads(_data_of(event))
                if terminal is not None and isinstance(terminal.get("response"), dict):
                    record_answer_object(self.exchange, terminal["response"])
            return event
        if b'"finish_reason":"' in event:
            self._finish_reasons(event)
        if b'"audio"' in event and _AUDIO_ID.search(event) and len(self.exchange.audio_ids) < _MAX_AUDIO_IDS:
            chunk = _loads(_data_of(event))
            choices = chunk.get("choices") if chunk else None
            if isinstance(choices, list):
                self.exchange.audio_ids.extend(audio_ids_of(choices, "delta"))
        if b'"usage":{' in event:
            chunk = _loads(_data_of(event))
            if chunk is not None:
                usage = Usage.from_openai(chunk.get("usage"))
                if usage is not None:
                    self.exchange.usage = usage
                    self.exchange.usage_source = "upstream"
                if self.strip_usage and chunk.get("choices") == []:
                    return b""
        if self.strip_usage and b'"usage":null' in event:
            event = event.replace(b',"usage":null', b"").replace(b'"usage":null,', b"")
        return event

    def _metadata(self, obj: Any) -> None:
        if isinstance(obj, dict):
            if isinstance(obj.get("id"), str):
                self.exchange.response_id = obj["id"]
            if isinstance(obj.get("model"), str):
                self.exchange.response_model = obj["model"]

    def _finish_reasons(self, event: bytes) -> None:
        chunk = _loads(_data_of(event))
        choices = chunk.get("choices") if chunk else None
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                    self.exchange.finish_reasons.append(choice["finish_reason"])

    def delivered_text(self) -> str:
        """Generated text seen so far (for estimating output tokens when usage never arrived)."""
        parts: list[str] = []
        for event in self._kept:
            data = _data_of(event)
            if not data or data == b"[DONE]":
                continue
            obj = _loads(data)
            if obj is None:
                continue
            if self.responses_api:
                if obj.get("type") == "response.output_text.delta" and isinstance(obj.get("delta"), str):
                    parts.append(obj["delta"])
                continue
            for choice in obj.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta") or {}
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str):
                    parts.append(content)
                elif isinstance(choice.get("text"), str):
                    parts.append(choice["text"])
        return "".join(parts)
