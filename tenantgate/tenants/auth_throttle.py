"""Throttled guessing: failed authentications (tenant keys, admin tokens) limited per source and in all, across
processes, without ever locking out a valid credential.

Only failures count. They are counted in fixed windows per source (an IPv4 address, or an IPv6 /64, since one
host easily has a whole /64) and for everybody at once, in Redis when configured (one script call per *failure*;
successes cost nothing) and otherwise in process memory. A process that learns a source is over its limit (or
the surface over its global limit) stops looking unknown credentials from it up: those get ``429``
(``too_many_failed_authentications``) at once, with no database query, until the window ends. That is what bounds
guessing and the database load it causes. A credential that *was* looked up is best answered for what it is (401
when invalid) even when its failure reaches the limit: a 429 would have the SDKs retry a key that cannot work.

A valid credential is never locked out by someone else's failures: a key or token that this process has seen valid
recently (the key cache, or ``vouch``) is looked up and accepted as usual; an unknown one from a throttled source
is still looked up, one per second per source and process (ten per second for the whole surface when the global
limit is reached), so a refused valid caller gets in with the retry its ``retry-after: 1`` asks for (the SDKs
retry 429s by themselves). Behind a proxy, ``TENANTGATE_TRUSTED_PROXIES`` makes the source the client's address
rather than the proxy's.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from tenantgate.wire.resp import RespClient

log = logging.getLogger("tenantgate.security")

Surface = Literal["tenant", "admin"]
_WINDOW = 60
_SOURCE_TRICKLE_SECONDS = 1.0
_GLOBAL_TRICKLE_PER_SECOND = 10
_MAX_TRACKED = 100_000
_VOUCH_SECONDS = 300.0
_SCRIPT = """
local source = redis.call('INCR', KEYS[1])
if source == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local everyone = redis.call('INCR', KEYS[2])
if everyone == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return {source, everyone}
"""


@dataclass(frozen=True, slots=True)
class FailureLimits:
    per_source: int
    """Failures per source per minute before the source is throttled."""
    overall: int
    """Failures per minute from all sources together before every unknown credential is throttled."""


def source_of(client: tuple[str, int] | list[object] | None) -> str:
    """The throttled unit: the client's IPv4 address, or its IPv6 /64."""
    if not client:
        return "unknown"
    host = str(client[0])
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class AuthThrottle:
    def __init__(self, redis: RespClient | None, prefix: str, limits: dict[Surface, FailureLimits]) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:authfail:"
        self._limits = limits
        self._blocked: dict[tuple[Surface, str], float] = {}
        """(surface, source or "*") -> when its window ends (time.time())."""
        self._trickle: dict[tuple[Surface, str], float] = {}
        self._global_tokens: dict[Surface, tuple[float, float]] = {}
        self._memory: Counter[tuple[Surface, str, int]] = Counter()
        self._vouched: dict[tuple[Surface, str], float] = {}
        self._redis_down_logged = False
        self.failures: Counter[tuple[Surface, str]] = Counter()
        """(surface, reason) -> count since start: reason missing, invalid or throttled."""

    def permit_lookup(self, surface: Surface, source: str) -> int | None:
        """None: go ahead and check the credential. Else refuse it unchecked: the seconds to tell it to wait."""
        now = time.time()
        until = self._blocked.get((surface, source), 0.0)
        if until > now:
            last = self._trickle.get((surface, source), 0.0)
            if now - last < _SOURCE_TRICKLE_SECONDS:
                return self._refused(surface)
            self._trickle[(surface, source)] = now
        overall = self._blocked.get((surface, "*"), 0.0)
        if overall > now:
            tokens, at = self._global_tokens.get(surface, (_GLOBAL_TRICKLE_PER_SECOND, now))
            tokens = min(_GLOBAL_TRICKLE_PER_SECOND, tokens + (now - at) * _GLOBAL_TRICKLE_PER_SECOND)
            if tokens < 1:
                self._global_tokens[surface] = (tokens, now)
                return self._refused(surface)
            self._global_tokens[surface] = (tokens - 1, now)
        return None

    def _refused(self, surface: Surface) -> int:
        self.failures[(surface, "throttled")] += 1
        return 1  # the next trickle slot: a valid credential gets in then

    def vouch(self, surface: Surface, credential_hash: str) -> None:
        """Remember a credential that just proved valid: from a throttled source it is still looked up at once."""
        self._vouched[(surface, credential_hash)] = time.monotonic() + _VOUCH_SECONDS
        if len(self._vouched) > _MAX_TRACKED:
            now = time.monotonic()
            self._vouched = {k: t for k, t in self._vouched.items() if t > now}

    def vouched(self, surface: Surface, credential_hash: str) -> bool:
        return self._vouched.get((surface, credential_hash), 0.0) > time.monotonic()

    async def failed(self, surface: Surface, source: str, reason: str) -> int | None:
        """Count a failure. Returns the seconds to wait if this source (or everybody) is now over a limit."""
        self.failures[(surface, reason)] += 1
        limits = self._limits[surface]
        now = time.time()
        window = int(now // _WINDOW)
        until = (window + 1) * _WINDOW
        by_source, overall = await self._count(surface, source, window)
        over = None
        if by_source > limits.per_source:
            if self._blocked.get((surface, source), 0.0) < until:
                log.warning(
                    "authentication failures from %s on the %s surface over the limit: throttled", source, surface
                )
            self._blocked[(surface, source)] = until
            over = until
        if overall > limits.overall:
            if self._blocked.get((surface, "*"), 0.0) < until:
                log.warning("authentication failures from all sources on the %s surface over the limit", surface)
            self._blocked[(surface, "*")] = until
            over = until
        if len(self._blocked) > _MAX_TRACKED:
            self._forget(now)
        return None if over is None else max(1, math.ceil(over - now))

    async def _count(self, surface: Surface, source: str, window: int) -> tuple[int, int]:
        if self._redis is not None:
            keys = (f"{self._prefix}{surface}:{source}:{window}", f"{self._prefix}{surface}:*:{window}")
            try:
                reply = await self._redis.execute("EVAL", _SCRIPT, 2, *keys, 2 * _WINDOW)
                if isinstance(reply, list) and len(reply) == 2:
                    self._redis_down_logged = False
                    return int(reply[0]), int(reply[1])
            except Exception as exc:
                if not self._redis_down_logged:
                    self._redis_down_logged = True
                    log.warning("auth failures counted per process while Redis fails: %s", type(exc).__name__)
        self._memory[(surface, source, window)] += 1
        self._memory[(surface, "*", window)] += 1
        if len(self._memory) > _MAX_TRACKED:
            for entry in [e for e in self._memory if e[2] < window]:
                del self._memory[entry]
        return self._memory[(surface, source, window)], self._memory[(surface, "*", window)]

    def _forget(self, now: float) -> None:
        for entry in [e for e, until in self._blocked.items() if until <= now]:
            del self._blocked[entry]
            self._trickle.pop(entry, None)
