"""How the limiter learns what a request cost, for tenants' monthly budgets.

The limiter does not price anything itself: it asks a ``CostEstimator`` once per finished request. Until the
metering price table (issue 5) provides one, ``NoCostKnown`` answers "unknown", which is charged as 0 - so a
monthly budget is recorded and shown but never runs out. Metering plugs in by handing its estimator to the
limiter: ``Limiter(..., cost_estimator=prices)`` or ``runtime.limiter.cost_estimator = prices``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from tenantgate.platform.proxy.exchange import Exchange
from tenantgate.tenants.metering.pricing import PriceBook


class CostEstimator(Protocol):
    def cost_usd(self, exchange: Exchange) -> Decimal | None:
        """What ``exchange`` cost in USD, from its model and final ``usage``; None when unknown.

        Called once per finished request on the event loop (after ``settle``, or in ``finish`` for requests that
        ended early); it must be fast and must not block or raise.
        """
        ...


class NoCostKnown:
    def cost_usd(self, exchange: Exchange) -> Decimal | None:
        return None


class PriceBookCost:
    """Budgets priced with metering's price table (the same prices the usage events carry)."""

    def __init__(self, prices: PriceBook) -> None:
        self.prices = prices

    def cost_usd(self, exchange: Exchange) -> Decimal | None:
        cost = self.prices.cost(
            exchange.model,
            exchange.usage,
            tenant_id=exchange.ctx.principal.tenant_id,
            at=exchange.started_at,
            served_model=exchange.response_model,
        )
        return cost.usd if cost.version is not None else None
