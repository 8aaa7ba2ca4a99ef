"""Back-pressure on clients that ignore ``retry-after``: their refusals are answered no sooner than a short delay.

A client in a closed loop that retries a 429 at once makes the worker refuse as fast as it can refuse: the flood
costs the worker its whole CPU even when every answer is cheap. So once a key has been refused more than
``TENANTGATE_REFUSAL_DELAY_AFTER`` times within a second, each further 429 it gets is sent no sooner than
``TENANTGATE_REFUSAL_DELAY_SECONDS`` after its request arrived (never later than its own ``retry-after``). The wait
is an ``asyncio.sleep``: it holds the connection, not the CPU, and a closed-loop client then sends one request per
delay per connection. At most ``TENANTGATE_REFUSAL_DELAY_MAX_HELD`` refusals wait at once in a worker; beyond
that, refusals are sent at once (a client with thousands of connections is then the connection limits' business).
A client that respects ``retry-after`` never meets the delay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

_WINDOW_SECONDS = 1.0
_MAX_TRACKED = 10_000


@dataclass(slots=True)
class _Recent:
    since: float
    count: int


class RefusalPacer:
    def __init__(self, delay: float, after: int, max_held: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self.delay = delay
        self.after = after
        self.max_held = max_held
        self.clock = clock
        """Seconds, the clock ``Exchange.started`` is read from."""
        self.held = 0
        self.delayed = 0
        """Refusals sent late (the metric ``tenantgate.limits.delayed_refusals``)."""
        self.over_capacity = 0
        """Refusals that should have waited but were sent at once: ``max_held`` were waiting already."""
        self._recent: dict[str, _Recent] = {}

    async def pace(self, principal: str, started: float, retry_after: float | None = None) -> None:
        """Return when a refusal to ``principal`` (a key id) for a request that arrived at ``started`` may go out."""
        wait = self.hold(principal, started, retry_after)
        if wait > 0:
            try:
                await asyncio.sleep(wait)
            finally:
                self.release()

    def hold(self, principal: str, started: float, retry_after: float | None = None) -> float:
        """Count a refusal to ``principal``; the seconds it must wait before it goes out (0: at once). A positive
        wait holds one of ``max_held`` places until ``release``."""
        if self.delay <= 0:
            return 0.0
        now = self.clock()
        recent = self._recent.get(principal)
        if recent is None or now - recent.since >= _WINDOW_SECONDS:
            if recent is None and len(self._recent) >= _MAX_TRACKED:
                self._forget(now)
            self._recent[principal] = _Recent(now, 1)
            return 0.0
        recent.count += 1
        if recent.count <= self.after:
            return 0.0
        wait = self.delay if retry_after is None else min(self.delay, retry_after)
        wait -= now - started
        if wait <= 0:
            return 0.0
        if self.held >= self.max_held:
            self.over_capacity += 1
            return 0.0
        self.held += 1
        self.delayed += 1
        return wait

    def release(self) -> None:
        """A held refusal went out (or its connection closed)."""
        self.held -= 1

    def _forget(self, now: float) -> None:
        for principal in [p for p, recent in self._recent.items() if now - recent.since >= _WINDOW_SECONDS]:
            del self._recent[principal]
        if len(self._recent) >= _MAX_TRACKED:
            self._recent.clear()
