"""The metering hook on the proxy path: one spool append per exchange, nothing else.

``settle`` runs before the last byte of the response goes out, so every answer a client received has its event
on disk first. ``finish`` records, for analytics and flagged not billable, the exchanges that never settled:
refused before the upstream (limits, bad requests) or failed on the way to it. Pricing and every database write
happen later, in batches (writer.py).
"""

from __future__ import annotations

from tenantgate.core.exchange import Exchange
from tenantgate.tenants.metering.events import encode, from_exchange, is_metered
from tenantgate.tenants.metering.spool import Spool
from tenantgate.tenants.metering.writer import MeterWriter


class MeteringHook:
    name = "metering"

    def __init__(self, spool: Spool, writer: MeterWriter) -> None:
        self.spool = spool
        self.writer = writer

    async def admit(self, exchange: Exchange) -> None:
        return None

    async def settle(self, exchange: Exchange) -> None:
        self._record(exchange, settled=True)

    def finish(self, exchange: Exchange) -> None:
        # Status 0: the client went away before sending its request; there is nothing to record.
        if exchange.status:
            self._record(exchange, settled=False)

    def _record(self, exchange: Exchange, *, settled: bool) -> None:
        if exchange.metered or not is_metered(exchange):
            return
        event = from_exchange(exchange, settled=settled)
        exchange.metered = True
        self.spool.append_or_hold(encode(event))
        self.writer.notify()
