"""What callers see of their limits, in OpenAI's words: x-ratelimit-* headers, 429 bodies, retry hints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from tenantgate.core.principal import Principal
from tenantgate.platform.errors import GatewayError, ServiceUnavailable
from tenantgate.tenants.limits.checks import NEVER, CheckState
from tenantgate.tenants.limits.policy import NANO_USD

Headers = list[tuple[bytes, bytes]]

_WINDOW_NAMES = {
    "rpm": "requests per min (RPM)",
    "rpd": "requests per day (RPD)",
    "tpm": "tokens per min (TPM)",
}


class RateLimited(GatewayError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, type_: str, headers: dict[str, str]) -> None:
        super().__init__(message, headers=headers)
        self.type = type_


class InsufficientQuota(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class RateLimiterUnavailable(ServiceUnavailable):
    code = "rate_limiter_unavailable"


def format_duration(ms: int) -> str:
    """OpenAI's (Go's) duration format: ``12ms``, ``1s``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    seconds = f"{whole}.{fraction:03d}".rstrip("0") if fraction else str(whole)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def rate_limit_headers(states: Sequence[CheckState]) -> Headers:
    # Per family, the binding one of the key's and the tenant's limit: the one with less left (the one a caller
    # runs into); the smaller limit on a tie.
    binding: dict[str, tuple[int, int, CheckState]] = {}
    for state in states:
        name = state.check.name
        if name == "rpm" or name == "tpm":
            rank = (state.remaining, state.check.limit, state)
            current = binding.get(name)
            if current is None or rank[:2] < current[:2]:
                binding[name] = rank
    headers: Headers = []
    for name, family in (("rpm", b"requests"), ("tpm", b"tokens")):
        found = binding.get(name)
        if found is None:
            continue
        remaining, limit, state = found
        headers += [
            (b"x-ratelimit-limit-" + family, str(limit).encode()),
            (b"x-ratelimit-remaining-" + family, str(remaining).encode()),
            (b"x-ratelimit-reset-" + family, format_duration(state.reset_ms).encode()),
        ]
    return headers


def _subject(principal: Principal, scope: str) -> str:
    if scope == "key":
        return f"API key {principal.key_id}"
    return f"tenant {principal.tenant_name} ({principal.tenant_id})"


def refusal(
    states: Sequence[CheckState], principal: Principal, model: str | None, headers: Headers, month_end: datetime
) -> GatewayError:
    """The error for a refused admission: quota first (retrying is pointless), then the longest wait."""
    failed = [s for s in states if not s.passed]
    base = {name.decode(): value.decode() for name, value in headers}
    for state in failed:
        if state.check.name in ("monthly_tokens", "monthly_budget"):
            return _quota_error(state, principal, base, month_end)
    for state in failed:
        if state.retry_ms == NEVER:
            return _too_large(state, principal, model, base)
    state = max(failed, key=lambda s: s.retry_ms)
    wait = format_duration(state.retry_ms)
    base["retry-after"] = str(max(1, math.ceil(state.retry_ms / 1000)))
    base["retry-after-ms"] = str(state.retry_ms)
    check = state.check
    where = f"for {model or 'this model'} in {_subject(principal, check.scope)}"
    if check.name == "concurrency":
        message = (
            f"Concurrency limit reached {where} on requests in flight: Limit {check.limit}, In flight {state.used}, "
            f"Requested 1. Please try again in {wait}."
        )
        return RateLimited(message, type_="requests", headers=base)
    message = (
        f"Rate limit reached {where} on {_WINDOW_NAMES[check.name]}: Limit {check.limit}, Used {state.used}, "
        f"Requested {check.amount}. Please try again in {wait}."
    )
    return RateLimited(message, type_="tokens" if check.name == "tpm" else "requests", headers=base)


def _too_large(state: CheckState, principal: Principal, model: str | None, headers: dict[str, str]) -> GatewayError:
    check = state.check
    headers["x-should-retry"] = "false"
    message = (
        f"Request too large for {model or 'this model'} in {_subject(principal, check.scope)} on "
        f"{_WINDOW_NAMES[check.name]}: Limit {check.limit}, Requested {check.amount}. "
        + (
            "The input or output tokens must be reduced in order to run successfully."
            if check.name == "tpm"
            else "No request can be admitted under this limit."
        )
    )
    return RateLimited(message, type_="tokens" if check.name == "tpm" else "requests", headers=headers)


def _quota_error(
    state: CheckState, principal: Principal, headers: dict[str, str], month_end: datetime
) -> InsufficientQuota:
    check = state.check
    headers["x-should-retry"] = "false"
    resets = month_end.strftime("%Y-%m-%dT%H:%M:%SZ")
    subject = _subject(principal, "tenant")
    # A request holds its worst case (its output cap, or the model's most) until it ends, then pays what it used.
    if check.name == "monthly_tokens":
        detail = (
            f"monthly token quota of {subject}: Limit {check.limit}, Used {state.used - state.reserved}, "
            f"Reserved by requests in flight {state.reserved}, Requested up to {check.amount} "
            "(a request holds the most tokens it may use until it ends; set max_tokens to hold less)"
        )
    else:
        detail = (
            f"monthly budget of {subject}: Limit ${_usd(check.limit)}, Spent ${_usd(state.used - state.reserved)}, "
            f"Reserved by requests in flight ${_usd(state.reserved)}, Requested up to ${_usd(check.amount)} "
            "(a request holds its worst-case cost until it ends; set max_tokens to hold less)"
        )
    return InsufficientQuota(
        f"You exceeded your current quota: {detail}. It resets at {resets}.",
        headers=headers,
    )


def _usd(nanos: int) -> str:
    return format((Decimal(nanos) / NANO_USD).normalize(), "f")
