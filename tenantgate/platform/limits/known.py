"""Refusals decided from memory: a key or tenant the limit store just found over a request-count window.

When Redis (or process memory) answers that a key's or a tenant's RPM or RPD has no room, it also says when the
window will have room again (``retry_ms``). Until then every request of that key (or of any key of that tenant) is
refused by this process from memory: no Redis round trip, a body rendered once, only the wait and its headers
computed per refusal. Only counts of requests are remembered this way - every request asks for exactly one, so
room frees at the same moment for all of them; TPM depends on each request's size, and requests in flight may end
at any moment, so those keep asking the store.

It only ever refuses, so no process admits more than the limit because of it (the exactness of ``checks.py`` is
untouched). Room can free before ``retry_ms`` only when another process gives back unused credit (near a limit
there is none: ``tenants/limits/redis.py``), so a refusal here is never longer than the store's own answer said.
A changed limit (a new principal from the key cache) forgets what was known about the old one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tenantgate.core.errors import GatewayError, error_body
from tenantgate.core.principal import Principal
from tenantgate.platform.limits.responses import format_duration
from tenantgate.tenants.limits.checks import CheckState, Kind

_COUNTED = {"rpm": "requests per min (RPM)", "rpd": "requests per day (RPD)"}
_WAIT = "@@wait@@"
_MAX_KNOWN = 10_000


class LocallyRefused(GatewayError):
    """A 429 whose body was rendered when the refusal was first learnt, with the wait filled in."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, body: bytes, headers: dict[str, str], refused_by: str) -> None:
        Exception.__init__(self, "rate limit (known)")
        self.message = "rate limit (known)"
        self.param = None
        self.headers = headers
        self.refused_by = refused_by
        self._body = body

    def body(self) -> bytes:
        return self._body


@dataclass(slots=True)
class Known:
    """A window known to be full: the refusal's body around its wait, and when the window has room again."""

    limit: int
    until: float
    """Clock seconds from which the window has room again."""
    head: bytes
    tail: bytes
    limit_header: str
    refused_by: str
    rendered: tuple[int, bytes, bytes] | None = None
    """The refusal lane's last answer for this window (its wait in ms, the wire bytes around the request id): under a
    flood several refusals a millisecond say the same wait, and are sent the same bytes (platform/refusal_lane.py)."""

    def wait_ms(self, now: float) -> int:
        return max(1, int((self.until - now) * 1000))

    def error(self, now: float) -> LocallyRefused:
        wait_ms = self.wait_ms(now)
        wait = format_duration(wait_ms)
        headers = {
            "retry-after": str(max(1, math.ceil(wait_ms / 1000))),
            "retry-after-ms": str(wait_ms),
        }
        if self.limit_header:
            headers["x-ratelimit-limit-requests"] = self.limit_header
            headers["x-ratelimit-remaining-requests"] = "0"
            headers["x-ratelimit-reset-requests"] = wait
        return LocallyRefused(self.head + wait.encode() + self.tail, headers, self.refused_by)


class KnownRefusals:
    """What this process knows to be over a request-count window, by key id and by tenant id, until when."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._keys: dict[str, Known] = {}
        self._tenants: dict[str, Known] = {}
        self.refused = 0
        """Requests refused from memory (the metric ``tenantgate.limits.local_refusals``)."""

    def __bool__(self) -> bool:
        return bool(self._keys or self._tenants)

    def check(self, principal: Principal) -> LocallyRefused | None:
        """The refusal for ``principal``'s request if one of its windows is known to be full, else None."""
        now = self.clock()
        known = self.find(principal, now)
        return None if known is None else known.error(now)

    def find(self, principal: Principal, now: float) -> Known | None:
        """The window that refuses ``principal``'s request at ``now`` (a reading of ``clock``), counted as a refusal,
        if one of its windows is known to be full, else None."""
        known = self._keys.get(principal.key_id)
        if known is not None:
            if now < known.until and known.limit in (principal.key_limits.rpm, principal.key_limits.rpd):
                self.refused += 1
                return known
            del self._keys[principal.key_id]
        known = self._tenants.get(principal.tenant_id)
        if known is not None:
            limits = principal.tenant_limits
            if now < known.until and known.limit in (limits.rpm, limits.rpd):
                self.refused += 1
                return known
            del self._tenants[principal.tenant_id]
        return None

    def learn(self, principal: Principal, states: Sequence[CheckState]) -> None:
        """Remember the request-count windows a store refused (and when they have room again)."""
        now = self.clock()
        for state in states:
            check = state.check
            if state.passed or check.kind is not Kind.WINDOW or check.name not in _COUNTED or state.retry_ms <= 0:
                continue
            table, subject = (
                (self._keys, principal.key_id) if check.scope == "key" else (self._tenants, principal.tenant_id)
            )
            if len(table) >= _MAX_KNOWN:
                self._forget_expired(table, now)
                if len(table) >= _MAX_KNOWN:
                    continue
            who = (
                f"API key {principal.key_id}"
                if check.scope == "key"
                else f"tenant {principal.tenant_name} ({principal.tenant_id})"
            )
            message = (
                f"Rate limit reached in {who} on {_COUNTED[check.name]}: Limit {check.limit}, Used {state.used}, "
                f"Requested 1. Please try again in {_WAIT}."
            )
            # The last one is the wait's place: names before it are the operator's strings and may contain anything.
            head, _, tail = error_body(message, "requests", "rate_limit_exceeded", None).rpartition(_WAIT.encode())
            table[subject] = Known(
                check.limit,
                now + state.retry_ms / 1000,
                head,
                tail,
                str(check.limit) if check.name == "rpm" else "",
                f"{check.scope}_{check.name}",
            )

    @staticmethod
    def _forget_expired(table: dict[str, Known], now: float) -> None:
        for subject in [s for s, known in table.items() if now >= known.until]:
            del table[subject]
