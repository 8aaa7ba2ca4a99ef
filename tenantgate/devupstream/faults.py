"""Faults that a test or benchmark asks for with request headers, so one dev upstream can play every failure.

The gateway forwards unknown request headers unchanged, so a test can script the upstream's misbehaviour through
the gateway. All headers are optional and combine:

=============================  ====================================================================================
``x-dev-fail: <status>``       answer with that HTTP status (400-599) and OpenAI's error body for it
``x-dev-retry-after-ms: <n>``  add ``retry-after-ms`` (and ``retry-after`` in whole seconds) to that answer
``x-dev-retry-after: <s>``     add only ``retry-after`` (seconds)
``x-dev-should-retry: <bool>`` add ``x-should-retry`` to that answer
``x-dev-first-byte-delay-ms``  wait that long before sending the status line and headers
``x-dev-stall-after-events``   after that many events (SSE events, audio chunks; a JSON body is one), stay silent
                               with the connection open until the client gives up
``x-dev-truncate-after-events`` after that many events, close the connection without ending the response
``x-dev-error-after-events``   after that many events, send OpenAI's in-stream error event and end the stream
``x-dev-garbage: <n>``         after ``n`` good events, send one malformed SSE event (a JSON answer becomes invalid
                               JSON when ``n`` is 0)
``x-dev-fail-times: <n>``      apply the faults above only to the first ``n`` requests with the same
                               ``x-dev-fail-key`` (or, without one, the same fault headers); later ones succeed
``x-dev-fail-key: <text>``     scope of that counter; answers carry ``x-dev-attempt: <k>`` (1 for the first)
``x-dev-fail-only: <names>``   apply faults only on dev upstreams of these names (comma-separated; see ``name``)
``x-dev-token-delay-ms: <n>``  per-request override of the per-token delay (not a fault: always applies)
=============================  ====================================================================================
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.types import Scope

_MAX_COUNTERS = 10_000


class FaultHeaderError(ValueError):
    """A fault header with a value the dev upstream cannot act on."""


@dataclass(frozen=True)
class Faults:
    fail_status: int | None = None
    retry_after_ms: int | None = None
    retry_after_s: float | None = None
    should_retry: str | None = None
    first_byte_delay_ms: int | None = None
    stall_after: int | None = None
    truncate_after: int | None = None
    error_after: int | None = None
    garbage_at: int | None = None
    token_delay_ms: float | None = None
    attempt: int = 0
    disrupts_body: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        # Checked on every streamed event, so worked out once.
        disrupts = any(
            v is not None for v in (self.stall_after, self.truncate_after, self.error_after, self.garbage_at)
        )
        object.__setattr__(self, "disrupts_body", disrupts)


NO_FAULTS = Faults()

_INT_FIELDS = {
    b"x-dev-fail": "fail_status",
    b"x-dev-retry-after-ms": "retry_after_ms",
    b"x-dev-first-byte-delay-ms": "first_byte_delay_ms",
    b"x-dev-stall-after-events": "stall_after",
    b"x-dev-truncate-after-events": "truncate_after",
    b"x-dev-error-after-events": "error_after",
    b"x-dev-garbage": "garbage_at",
}


class FaultCounters:
    """Counts requests per fault key, so "fail twice, then succeed" can be scripted; bounded, oldest forgotten."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._counts: OrderedDict[str, int] = OrderedDict()

    def attempts(self, key: str) -> int:
        return self._counts.get(key, 0)

    def _count(self, key: str) -> int:
        count = self._counts.pop(key, 0) + 1
        self._counts[key] = count
        if len(self._counts) > _MAX_COUNTERS:
            self._counts.popitem(last=False)
        return count

    def faults_for(self, scope: Scope) -> Faults:
        """The faults this request asks for, after the per-key counter and the name filter."""
        raw = {name: value for name, value in scope["headers"] if name.startswith(b"x-dev-")}
        if not raw:
            return NO_FAULTS
        values: dict[str, int | float | str | None] = {
            attr: _non_negative_int(name, raw[name]) for name, attr in _INT_FIELDS.items() if name in raw
        }
        status = values.get("fail_status")
        if status is not None and not 400 <= int(status) <= 599:
            raise FaultHeaderError("x-dev-fail must be an HTTP error status between 400 and 599.")
        if b"x-dev-retry-after" in raw:
            values["retry_after_s"] = _non_negative_float(b"x-dev-retry-after", raw[b"x-dev-retry-after"])
        if b"x-dev-should-retry" in raw:
            values["should_retry"] = raw[b"x-dev-should-retry"].decode("latin-1").strip().lower()
        token_delay = (
            _non_negative_float(b"x-dev-token-delay-ms", raw[b"x-dev-token-delay-ms"])
            if b"x-dev-token-delay-ms" in raw
            else None
        )
        only = raw.get(b"x-dev-fail-only")
        if only is not None and self.name not in {n.strip() for n in only.decode("latin-1").split(",")}:
            return Faults(token_delay_ms=token_delay)
        times = _non_negative_int(b"x-dev-fail-times", raw[b"x-dev-fail-times"]) if b"x-dev-fail-times" in raw else None
        key = raw.get(b"x-dev-fail-key")
        attempt = 0
        if key is not None or times is not None:
            counter_key = (key or b"|".join(b"%s=%s" % item for item in sorted(raw.items()))).decode("latin-1")
            attempt = self._count(counter_key)
        if times is not None and attempt > times:
            return Faults(token_delay_ms=token_delay, attempt=attempt)
        return Faults(token_delay_ms=token_delay, attempt=attempt, **values)  # type: ignore[arg-type]


def _non_negative_int(name: bytes, value: bytes) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise FaultHeaderError(f"{name.decode()} must be a non-negative integer.")
    return number


def _non_negative_float(name: bytes, value: bytes) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:
        raise FaultHeaderError(f"{name.decode()} must be a non-negative number.")
    return number


def fault_status_error(status: int) -> tuple[str, str, str | int | None]:
    """OpenAI's message, type and code for an answer with ``status``."""
    known: dict[int, tuple[str, str, str | int | None]] = {
        400: ("Invalid request (fault injected by the dev upstream).", "invalid_request_error", None),
        401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
        403: ("You are not allowed to sample from this model.", "invalid_request_error", None),
        404: ("The model does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"),
        408: ("Request timed out.", "invalid_request_error", None),
        409: ("Conflict: the request could not be completed.", "invalid_request_error", None),
        429: (
            "Rate limit reached for requests in organization org-devupstream on requests per min (RPM): "
            "Limit 30000, Used 30000, Requested 1. Please try again in 2ms.",
            "requests",
            "rate_limit_exceeded",
        ),
        500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
        502: ("Bad gateway.", "cf_bad_gateway", 502),
        503: ("The engine is currently overloaded, please try again later.", "server_error", None),
        504: ("Gateway timeout.", "cf_gateway_timeout", 504),
    }
    if status in known:
        return known[status]
    if status >= 500:
        return (f"The server answered with status {status}.", "server_error", None)
    return (f"The request was refused with status {status}.", "invalid_request_error", None)


def fault_headers(faults: Faults) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    if faults.retry_after_ms is not None:
        headers.append((b"retry-after-ms", str(faults.retry_after_ms).encode()))
        headers.append((b"retry-after", str(max(1, -(-faults.retry_after_ms // 1000))).encode()))
    elif faults.retry_after_s is not None:
        headers.append((b"retry-after", f"{faults.retry_after_s:g}".encode()))
    if faults.should_retry is not None:
        headers.append((b"x-should-retry", faults.should_retry.encode()))
    return headers


def duration(seconds: float) -> str:
    """A duration the way OpenAI's x-ratelimit-reset-* headers write it: ``12ms``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"


class RateWindow:
    """OpenAI-like x-ratelimit-* headers from a one-minute window of what this server answered."""

    limit_requests = 30_000
    limit_tokens = 150_000_000
    _LIMITS = (
        (b"x-ratelimit-limit-requests", b"%d" % limit_requests),
        (b"x-ratelimit-limit-tokens", b"%d" % limit_tokens),
    )

    def __init__(self) -> None:
        self._minute = 0
        self._requests = 0
        self._tokens = 0

    def take(self, tokens: int) -> list[tuple[bytes, bytes]]:
        minute = int(time.time()) // 60
        if minute != self._minute:
            self._minute, self._requests, self._tokens = minute, 0, 0
        self._requests += 1
        self._tokens += tokens
        requests, used = self._requests, self._tokens
        reset_requests = 60_000 * requests // self.limit_requests
        reset_tokens = 60_000 * used // self.limit_tokens
        return [
            *self._LIMITS,
            (
                b"x-ratelimit-remaining-requests",
                b"%d" % (self.limit_requests - requests if requests < self.limit_requests else 0),
            ),
            (b"x-ratelimit-remaining-tokens", b"%d" % (self.limit_tokens - used if used < self.limit_tokens else 0)),
            (
                b"x-ratelimit-reset-requests",
                b"%dms" % reset_requests if reset_requests < 1000 else _reset(reset_requests),
            ),
            (b"x-ratelimit-reset-tokens", b"%dms" % reset_tokens if reset_tokens < 1000 else _reset(reset_tokens)),
        ]


def _reset(millis: int) -> bytes:
    return duration(millis / 1000).encode()
