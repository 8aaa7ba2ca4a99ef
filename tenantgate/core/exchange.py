"""One proxied request and what became of it: the record every hook (limits, metering, telemetry) reads.

The forwarder fills it in as the exchange progresses; hooks never parse bodies again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tenantgate.core.context import RequestContext
from tenantgate.core.errors import GatewayError

UsageSource = Literal["upstream", "estimated"]


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    image_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """Chat/completions/embeddings (``prompt_tokens``...) or Responses (``input_tokens``...) usage objects."""
        if not isinstance(usage, dict):
            return None
        if "prompt_tokens" in usage or "completion_tokens" in usage:
            prompt = usage.get("prompt_tokens_details") or {}
            completion = usage.get("completion_tokens_details") or {}
            return cls(
                input_tokens=_int(usage.get("prompt_tokens")),
                output_tokens=_int(usage.get("completion_tokens")),
                cached_input_tokens=_int(prompt.get("cached_tokens")),
                reasoning_tokens=_int(completion.get("reasoning_tokens")),
                input_audio_tokens=_int(prompt.get("audio_tokens")),
                output_audio_tokens=_int(completion.get("audio_tokens")),
            )
        if "input_tokens" in usage or "output_tokens" in usage:
            # Transcriptions spell it input_token_details (their audio tokens are priced apart from the prompt).
            inputs = _dict(usage.get("input_tokens_details") or usage.get("input_token_details"))
            outputs = _dict(usage.get("output_tokens_details"))
            return cls(
                input_tokens=_int(usage.get("input_tokens")),
                output_tokens=_int(usage.get("output_tokens")),
                cached_input_tokens=_int(inputs.get("cached_tokens")),
                reasoning_tokens=_int(outputs.get("reasoning_tokens")),
                input_audio_tokens=_int(inputs.get("audio_tokens")),
                image_tokens=_int(inputs.get("image_tokens")),
            )
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """Hosted tools a Responses API answer used, billed per call (searches) or per session (code interpreter)."""

    web_search_calls: int = 0
    file_search_calls: int = 0
    code_interpreter_sessions: int = 0


NO_TOOL_CALLS = ToolCalls()


@dataclass(slots=True)
class BatchAdmission:
    """A batch create: what its lines are estimated to need (the batches route sets it before admission), what the
    limiter made it hold until the batch ends (``holds``), and whether those holds were written beside the batch
    (``kept``; else the limiter releases them when the request ends)."""

    endpoint: str
    queue_tokens: dict[str, int]
    """Estimated prompt tokens per model (what OpenAI's batch queue limits count)."""
    month_tokens: int
    """Every line's prompt plus the most output it allows."""
    month_nano_usd: int
    """That usage at batch prices, in nano-USD."""
    holds: list[dict[str, Any]] = field(default_factory=list)
    kept: bool = False
    stored_chat: list[str] = field(default_factory=list)
    """The ``line_key`` (proxy/batch_input.py) of each line that stores its chat completion (``store: true``)."""
    worst_tokens: dict[str, int] = field(default_factory=dict)
    """Per model: every line's prompt plus the most output it allows (what an unreadable output is billed from)."""


@dataclass(slots=True)
class Attempt:
    """One try at one upstream deployment (retries and failover make several)."""

    upstream: str
    started: float
    ended: float | None = None
    status: int | None = None
    error_type: str | None = None


@dataclass(slots=True, eq=False)
class Exchange:
    ctx: RequestContext
    operation: str
    """OpenTelemetry ``gen_ai.operation.name``: chat, text_completion, embeddings, responses, models..."""
    path: str
    """The route template (``/v1/chat/completions``, ``/v1/responses/{response_id}``), never the caller's path."""
    model_work: bool = True
    """The request asks for model work (billable); reads, lists, deletes and cancels of stored objects do not."""
    model: str | None = None
    stream: bool = False
    payload: dict[str, Any] | None = None
    body_size: int = 0
    """Bytes of the request body as the client sent it."""
    answer_format: str | None = None
    """A multipart form's ``response_format`` (a JSON body's is in ``payload``): whether its answer can be priced."""
    upload_seconds: Callable[[], float | None] | None = None
    """An audio upload's length, asked when its answer does not say it (platform/proxy/audio_length.py)."""
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)

    upstream_name: str = ""
    upstream_model: str | None = None
    attempts: int = 0
    status: int = 0
    first_byte_at: float | None = None
    finished_at: float | None = None
    response_id: str | None = None
    # Ids of the output items of a Responses API answer (stored with the response; owned like it).
    output_item_ids: list[str] = field(default_factory=list)
    # Ids of the audio a chat answer spoke (a later message may name it as ``audio.id``; owned like the answer).
    audio_ids: list[str] = field(default_factory=list)
    # The usage event's id when it must be the same however often the usage is seen (a background response's
    # completion, metered once whether it arrives on its create stream or on any number of retrieves).
    event_id: str | None = None
    # Set by a hook in settle when the answer must not reach the client although it was metered (e.g. it names
    # an object another tenant owns): the relay sends this error instead.
    withheld: GatewayError | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    usage: Usage | None = None
    usage_source: UsageSource | None = None
    # Units of a non-token family the upstream reported (seconds of transcribed or translated audio).
    quantity: int | None = None
    # Hosted tools the answer used (web and file search calls, code interpreter sessions), billed beside its tokens.
    tools: ToolCalls = NO_TOOL_CALLS
    error_type: str | None = None
    client_disconnected: bool = False
    attempt_log: list[Attempt] = field(default_factory=list)
    # Headers hooks add to the client's response (e.g. the tenant's x-ratelimit-* headers).
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Headers hooks add to every upstream request (e.g. W3C traceparent).
    upstream_headers: list[tuple[str, str]] = field(default_factory=list)
    # Which limits refused the request, e.g. "key_rpm,tenant_tpm" (the limiter sets it; telemetry labels by it).
    refused_by: str | None = None
    # Refused from process memory (the key or tenant was known to be over its RPM or RPD): the ledger keeps one such
    # refusal per key a second, the metrics all of them (tenants/metering/hook.py).
    refused_from_memory: bool = False
    # The usage event of this exchange is on record (metering writes it once, in settle or else in finish).
    metered: bool = False
    # Routes whose answers create or describe stored objects (files, uploads, batches) keep the parsed JSON answer
    # here for the hook that records them (proxy/object_answers.py); nothing else parses it again.
    keep_answer: bool = False
    answer: dict[str, Any] | None = None
    # The object a request works on (an upload, a batch's input file): what it creates is held where that is.
    created_under: str | None = None
    # The room an upload holds under its tenant's file limits (tenants/file_room.py): the row that records what it
    # made (the file, the open upload) takes the hold's place in one transaction, so the two never count at once.
    file_hold: str | None = None
    # A batch create: its estimate, what the limiter made it hold, whether that was recorded beside the batch.
    batch: BatchAdmission | None = None
    # A background response's create: what it holds against the month's quota and budget until it completes (the
    # limiter hands its reservation over, written beside the response in the object index), and whether that was
    # recorded (else the limiter releases it when the request ends).
    background_holds: list[dict[str, Any]] | None = None
    background_worst: Usage | None = None
    """A background response's worst case as admission held it (its prompt, the most output it allows)."""
    background_holds_kept: bool = False
    # Set by a hook in admit (telemetry's opt-in content capture): keep the answer's choices/output or the
    # streamed text in ``output``. Off, no answer content is kept.
    capture_output: bool = False
    output: Any = None
    # The exchange holds one of its worker's work slots (platform/workslots.py) until the upstream's answer begins.
    holds_slot: bool = False
    # Seconds the request waited by design rather than being worked on: in a work slot's queue, or held back before
    # a refusal (back-pressure on clients that ignore retry-after). Whoever makes it wait adds it; the metrics count
    # it, with the gaps between upstream attempts (the retry backoff), apart from the gateway's own time.
    waited: float = 0.0

    @property
    def reached_upstream(self) -> bool:
        return self.attempts > 0

    @property
    def latency(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_byte_at is None else self.first_byte_at - self.started
