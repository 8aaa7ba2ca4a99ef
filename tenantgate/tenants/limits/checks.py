"""What the limit stores check and charge: plain values shared by the Redis and the memory backend.

A request is admitted only if every one of its checks passes; then all of them are charged at once (one Lua
script in Redis, one synchronous step in memory), so a refused tenant limit never uses up a key's allowance.

Windows are sliding logs of ``BUCKETS`` buckets per window: an amount charged in bucket ``b`` (of width
``window / BUCKETS``) counts until the *end* of that bucket has left the window. So every amount counts for at
least the full window after it was admitted - the limit holds in every interval of the window's length, never
more is admitted - and at most one bucket longer (1/60 of the window: 1 s for per-minute limits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

BUCKETS = 60
MINUTE_MS = 60_000
DAY_MS = 86_400_000
NEVER = -1
"""``retry_ms`` of a check the request can never pass (it asks for more than the whole limit)."""
SEED = -2
"""``retry_ms`` of a month counter the store does not hold (a start, a Redis restart or eviction, a limit set
mid-month) or holds at an older version than the check's: nothing was admitted; the limiter seeds the counter from
the ledger and asks again."""
CONCURRENCY_RETRY_MS = 1000
"""When requests in flight will end is unknown: a refused caller is told to retry after a second."""


class Kind(StrEnum):
    WINDOW = "w"
    """Sliding window: admitted while used + amount <= limit; the amount is charged now."""
    CONCURRENCY = "c"
    """In-flight leases: admitted while leases + 1 <= limit; a lease is held until released or expired."""
    COUNTER = "q"
    """A counter over a fixed period (the month), a cache of the ledger's total: admitted while used + amount <=
    limit; the amount is reserved now (counted in ``used`` and in the reservations) and settled to the actual
    amount afterwards. A counter the store does not hold is not guessed at: ``SEED``."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    """rpm, tpm, rpd, concurrency, monthly_tokens, monthly_budget."""
    scope: str
    """key or tenant."""
    kind: Kind
    key: str
    limit: int
    amount: int
    period_ms: int = 0
    """WINDOW: the window length; COUNTER: how long the counter is kept; CONCURRENCY: the lease TTL."""
    version: int = 0
    """COUNTER: the least version the counter must have been seeded at (the tenant's limits changed since a
    counter of an older one was seeded: what was spent without a limit reached no counter, so it is ``SEED``)."""

    @property
    def bucket_ms(self) -> int:
        return self.period_ms // BUCKETS

    @property
    def storage_keys(self) -> tuple[str, ...]:
        if self.kind is Kind.WINDOW:
            return (self.key, self.key + ":z")
        if self.kind is Kind.COUNTER:
            # The counter, the part of it that is reservations in flight, the version it was seeded at.
            return (self.key, self.key + ":r", self.key + ":v")
        return (self.key,)


@dataclass(frozen=True, slots=True)
class CheckState:
    check: Check
    used: int
    """After this admission when admitted; as found when refused or peeked."""
    reset_ms: int
    """Until ``used`` is back to zero (windows), 0 otherwise."""
    retry_ms: int
    """Refused: until the request would fit (``NEVER`` if it cannot, ``SEED`` if unknown); 0 when passed."""
    reserved: int = 0
    """Counters: how much of ``used`` is reserved by requests still in flight."""

    @property
    def passed(self) -> bool:
        return self.retry_ms == 0

    @property
    def remaining(self) -> int:
        return max(0, self.check.limit - self.used)


@dataclass(frozen=True, slots=True)
class Verdict:
    admitted: bool
    now_ms: int
    states: Sequence[CheckState]


@dataclass(slots=True)
class Settlement:
    """What to do once a request is over: release its lease, correct its estimates, charge its cost."""

    lease: str = ""
    release: list[Check] = field(default_factory=list)
    window_deltas: list[tuple[Check, int]] = field(default_factory=list)
    counter_deltas: list[tuple[Check, int, int]] = field(default_factory=list)
    """(counter, correction, reservation released): reserved 100, used 30 is (check, -70, 100)."""
    admitted_ms: int = 0

    def __bool__(self) -> bool:
        return bool(self.release or self.window_deltas or self.counter_deltas)
