"""Admin API: price overrides (create, list, get, delete). Billing tokens read them; only admins change them.

A change is used by the process that made it before the response is sent, by the other processes within about a
second when they share Redis (the invalidation channel), and otherwise at their next periodic reload (30 s).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from tenantgate.platform.admin.auth import AdminAccess, require_billing
from tenantgate.platform.admin.deps import After, Limit, mutation, reading
from tenantgate.platform.admin.schemas import Deleted, ListOf, PriceOverrideCreate, PriceOverrideOut, page_fields
from tenantgate.platform.deps import metering_of
from tenantgate.tenants.metering import price_overrides
from tenantgate.tenants.metering.price_overrides import PriceScope

router = APIRouter(prefix="/prices", tags=["prices"])


@router.post("", status_code=201, summary="Set a price for a model (everyone, one plan or one tenant) from a time on")
async def create_price(body: PriceOverrideCreate, request: Request, identity: AdminAccess) -> PriceOverrideOut:
    async with mutation(request, identity) as op:
        row = await price_overrides.create_override(op, **body.model_dump())
        out = PriceOverrideOut.of(row)
    await metering_of(request).reload_prices()
    return out


@router.get("", summary="List price overrides, newest first", dependencies=[Depends(require_billing)])
async def list_prices(
    request: Request,
    scope: Annotated[PriceScope | None, Query(description="global, plan or tenant")] = None,
    tenant_id: Annotated[str | None, Query(description="This tenant's own overrides")] = None,
    plan_id: Annotated[str | None, Query(description="This plan's overrides")] = None,
    model: Annotated[str | None, Query(description="Overrides for exactly this model name")] = None,
    limit: Limit = 20,
    after: After = None,
) -> ListOf[PriceOverrideOut]:
    async with reading(request) as session:
        page = await price_overrides.list_overrides(
            session, scope=scope, tenant_id=tenant_id, plan_id=plan_id, model=model, limit=limit, after=after
        )
        data = [PriceOverrideOut.of(row) for row in page.items]
    return ListOf[PriceOverrideOut](**page_fields(data, page.has_more))


@router.get("/{price_id}", summary="Get a price override", dependencies=[Depends(require_billing)])
async def get_price(price_id: str, request: Request) -> PriceOverrideOut:
    async with reading(request) as session:
        return PriceOverrideOut.of(await price_overrides.get_override(session, price_id))


@router.delete("/{price_id}", summary="Delete a price override (recorded usage keeps its cost)")
async def delete_price(price_id: str, request: Request, identity: AdminAccess) -> Deleted:
    async with mutation(request, identity) as op:
        await price_overrides.delete_override(op, await price_overrides.get_override(op.session, price_id))
    await metering_of(request).reload_prices()
    return Deleted(id=price_id, object="price_override")
