"""Extension points of the proxy path. Limits, metering and telemetry plug in here, in a declared order.

For every proxied request the pipeline calls, in order:
  ``admit``  - before anything is sent upstream; raise a GatewayError (e.g. 429) to refuse the request.
  ``settle`` - once the final usage is known (from the upstream, or estimated), *before* the last byte of the
               response goes to the client: a durable metering write belongs here, so every response a client
               fully received is on record.
  ``finish`` - after the exchange ended, however it ended (also after a refused ``admit``): release
               reservations, record telemetry. Must not raise and must not block.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from tenantgate.core.exchange import Exchange

log = logging.getLogger("tenantgate.proxy")


class ExchangeHook(Protocol):
    name: str

    async def admit(self, exchange: Exchange) -> None: ...

    async def settle(self, exchange: Exchange) -> None: ...

    def finish(self, exchange: Exchange) -> None: ...


class Hooks:
    def __init__(self, hooks: Sequence[ExchangeHook] = ()) -> None:
        self.hooks = tuple(hooks)

    async def admit(self, exchange: Exchange) -> None:
        for hook in self.hooks:
            await hook.admit(exchange)

    async def settle(self, exchange: Exchange) -> None:
        for hook in self.hooks:
            await hook.settle(exchange)

    def finish(self, exchange: Exchange) -> None:
        for hook in reversed(self.hooks):
            try:
                hook.finish(exchange)
            except Exception:
                log.exception("exchange hook %s failed in finish", hook.name)
