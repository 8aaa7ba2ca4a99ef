"""A hook that records every exchange, for tests that assert what the proxy observed."""

from __future__ import annotations

from dataclasses import dataclass, field

from tenantgate.core.exchange import Exchange


@dataclass
class RecordingHook:
    name: str = "recording"
    settled: list[Exchange] = field(default_factory=list)
    finished: list[Exchange] = field(default_factory=list)

    async def admit(self, exchange: Exchange) -> None:
        return None

    async def settle(self, exchange: Exchange) -> None:
        self.settled.append(exchange)

    def finish(self, exchange: Exchange) -> None:
        self.finished.append(exchange)
