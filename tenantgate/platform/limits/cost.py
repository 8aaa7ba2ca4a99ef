"""How the limiter learns what a request costs, for tenants' monthly budgets.

The limiter does not price anything itself: it asks a ``CostEstimator`` for a request's worst case when admitting
it (held against the budget while it runs) and for its actual cost once it is over (the reservation is settled to
it). The runtime hands it metering's price table (``PriceBookCost``), the same prices the usage events carry;
``NoCostKnown`` (no prices) makes a budget a number that never runs out.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Protocol

from tenantgate.core.exchange import Exchange, Usage
from tenantgate.tenants.metering.events import measure_of_exchange
from tenantgate.tenants.metering.pricing import PriceBook


class CostEstimator(Protocol):
    def cost_usd(self, exchange: Exchange) -> Decimal | None:
        """What ``exchange`` cost in USD, from its model and final ``usage``; None when unknown.

        Called once per finished request on the event loop (after ``settle``, or in ``finish`` for requests that
        ended early); it must be fast and must not block or raise.
        """
        ...

    def worst_case_usd(self, exchange: Exchange, usage: Usage, quantity: int | None = None) -> Decimal | None:
        """What ``exchange`` would cost with that ``usage`` (its worst case, held against a budget while it runs),
        and ``quantity`` images, characters or seconds where its family is sold by the unit (None: what the request
        asks for, e.g. its ``n`` images); None when unknown. Same constraints as ``cost_usd``."""
        ...


class NoCostKnown:
    def cost_usd(self, exchange: Exchange) -> Decimal | None:
        return None

    def worst_case_usd(self, exchange: Exchange, usage: Usage, quantity: int | None = None) -> Decimal | None:
        return None


class PriceBookCost:
    """Budgets priced with metering's price table (the same prices the usage events carry)."""

    def __init__(self, prices: PriceBook) -> None:
        self.prices = prices

    def cost_usd(self, exchange: Exchange) -> Decimal | None:
        # Families sold by the unit (images, characters, seconds) may report no token usage at all.
        usage = exchange.usage or (Usage() if exchange.reached_upstream and 0 < exchange.status < 400 else None)
        cost = self.prices.cost(
            exchange.model,
            usage,
            measure=measure_of_exchange(exchange),
            tenant_id=exchange.ctx.principal.tenant_id,
            at=exchange.started_at,
            served_model=exchange.response_model,
        )
        return cost.usd if cost.priced else None

    def worst_case_usd(self, exchange: Exchange, usage: Usage, quantity: int | None = None) -> Decimal | None:
        # Images by number and speech by characters, from the request, unless the limiter bounds the quantity (the
        # seconds of an upload); the tokens are the limiter's bound, priced like tokens the upstream reported.
        measure = replace(measure_of_exchange(exchange), usage_reported=True)
        if quantity is not None:
            measure = replace(measure, quantity=quantity)
        cost = self.prices.cost(
            exchange.model, usage, measure=measure, tenant_id=exchange.ctx.principal.tenant_id, at=exchange.started_at
        )
        return cost.usd if cost.priced else None
