"""The metering hook on the proxy path: one spool append per exchange, nothing else.

``settle`` runs before the last byte of the response goes out, so every answer a client received has its event
on disk first. ``finish`` records, for analytics and flagged not billable, the exchanges that never settled:
refused before the upstream (limits, bad requests) or failed on the way to it. Pricing and every database write
happen later, in batches (writer.py).

Refusals from memory (a key or tenant known to be over its RPM or RPD) are recorded once per key a second: a client
hammering past its limit is refused thousands of times a second, and each event would cost a spool line, a
database row and about a fifth of the refusal's CPU - a flood could fill the database with its own refusals. They
are never billable; the metrics (``tenantgate.proxy.requests`` by status) count every one.
"""

from __future__ import annotations

import time

from tenantgate.core.exchange import Exchange
from tenantgate.tenants.metering.events import encode, from_exchange, is_metered
from tenantgate.tenants.metering.spool import Spool
from tenantgate.tenants.metering.writer import MeterWriter

_MAX_KEYS_SEEN = 10_000


class MeteringHook:
    name = "metering"

    def __init__(self, spool: Spool, writer: MeterWriter) -> None:
        self.spool = spool
        self.writer = writer
        self._refusals_seen: dict[str, int] = {}
        """Key id -> the second its last refusal from memory was recorded."""

    async def admit(self, exchange: Exchange) -> None:
        return None

    async def settle(self, exchange: Exchange) -> None:
        self._record(exchange, settled=True)

    def finish(self, exchange: Exchange) -> None:
        # Status 0: the client went away before sending its request; there is nothing to record.
        if not exchange.status:
            return
        if exchange.refused_from_memory:
            second, key = int(time.monotonic()), exchange.ctx.principal.key_id
            seen = self._refusals_seen
            if seen.get(key) == second:
                return
            if len(seen) >= _MAX_KEYS_SEEN:
                seen.clear()
            seen[key] = second
        self._record(exchange, settled=False)

    def _record(self, exchange: Exchange, *, settled: bool) -> None:
        if exchange.metered or not is_metered(exchange):
            return
        event = from_exchange(exchange, settled=settled)
        exchange.metered = True
        self.spool.append_or_hold(encode(event))
        self.writer.notify()
