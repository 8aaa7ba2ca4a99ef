"""Price overrides: an operator's price for a model, for everyone, one plan or one tenant, from a given time on.

Shared by the admin API and the CLI; functions flush, never commit. Rows are never edited, because an event's
``price_version`` names the row that priced it: a new price is a new row, and a deletion is audited with
everything the row said. Overrides start now or later, never in the past: recorded usage keeps the cost it was
written with, so a backdated price would reach only the events still on their way to the database.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.core.errors import BadRequest
from tenantgate.ids import new_id
from tenantgate.tenants import plans, service
from tenantgate.tenants.errors import PriceOverrideNotFound
from tenantgate.tenants.invalidation import PRICES
from tenantgate.tenants.metering.models import PriceOverrideRow
from tenantgate.tenants.models import utcnow
from tenantgate.tenants.operation import Operation, summary
from tenantgate.tenants.pagination import Page, newest_first

PriceScope = Literal["global", "plan", "tenant"]

# A start time this little in the past is the caller's clock running behind ours: it means "now".
CLOCK_SKEW = timedelta(seconds=60)


def _decimal_text(value: Decimal) -> str:
    return format(value.normalize(), "f")


async def get_override(session: AsyncSession, override_id: str) -> PriceOverrideRow:
    row = await session.get(PriceOverrideRow, override_id)
    if row is None:
        raise PriceOverrideNotFound(override_id)
    return row


async def list_overrides(
    session: AsyncSession,
    *,
    scope: PriceScope | None = None,
    tenant_id: str | None = None,
    plan_id: str | None = None,
    model: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> Page[PriceOverrideRow]:
    """Newest first; ``tenant_id``/``plan_id`` select that tenant's or plan's own overrides."""
    statement = select(PriceOverrideRow)
    if scope == "global":
        statement = statement.where(PriceOverrideRow.tenant_id.is_(None), PriceOverrideRow.plan_id.is_(None))
    elif scope == "plan":
        statement = statement.where(PriceOverrideRow.tenant_id.is_(None), PriceOverrideRow.plan_id.is_not(None))
    elif scope == "tenant":
        statement = statement.where(PriceOverrideRow.tenant_id.is_not(None))
    for column, value in (
        (PriceOverrideRow.tenant_id, tenant_id),
        (PriceOverrideRow.plan_id, plan_id),
        (PriceOverrideRow.model, model),
    ):
        if value is not None:
            statement = statement.where(column == value)
    return await newest_first(session, statement, PriceOverrideRow.id, limit=limit, after=after)


async def create_override(
    op: Operation,
    *,
    model: str,
    input_per_1m: Decimal,
    output_per_1m: Decimal,
    cached_input_per_1m: Decimal | None = None,
    tenant_id: str | None = None,
    plan_id: str | None = None,
    effective_from: datetime | None = None,
) -> PriceOverrideRow:
    """A new price for ``model`` (and its dated snapshots), from ``effective_from`` (default: now) on."""
    if tenant_id is not None and plan_id is not None:
        raise BadRequest(
            "An override applies to one tenant, one plan or everyone: give tenant_id or plan_id, not both.",
            param="plan_id",
            code="invalid_scope",
        )
    now = utcnow()
    if effective_from is not None and effective_from < now - CLOCK_SKEW:
        raise BadRequest(
            f"effective_from {effective_from.isoformat()} is in the past. Recorded usage keeps the price it was "
            "recorded with; an override starts now (leave effective_from out) or later.",
            param="effective_from",
            code="effective_from_in_past",
        )
    if tenant_id is not None:
        await service.live_tenant(op.session, tenant_id, param="tenant_id")
    if plan_id is not None:
        await plans.get_plan(op.session, plan_id, param="plan_id")
    row = PriceOverrideRow(
        id=new_id("po"),
        tenant_id=tenant_id,
        plan_id=plan_id,
        model=model,
        input_per_1m=_decimal_text(input_per_1m),
        cached_input_per_1m=None if cached_input_per_1m is None else _decimal_text(cached_input_per_1m),
        output_per_1m=_decimal_text(output_per_1m),
        effective_from=now if effective_from is None else max(effective_from, now),
        created_at=now,
    )
    op.session.add(row)
    await op.session.flush()
    op.audit("price_override.create", row, tenant_id=tenant_id, after=summary(row))
    op.invalidate(PRICES.scope)
    return row


async def delete_override(op: Operation, row: PriceOverrideRow) -> None:
    """Remove an override: usage from now on is priced as if it had never existed (recorded usage keeps its cost)."""
    op.audit("price_override.delete", row, tenant_id=row.tenant_id, before=summary(row))
    await op.session.delete(row)
    await op.session.flush()
    op.invalidate(PRICES.scope)
