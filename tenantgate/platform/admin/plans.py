"""Admin API: plans (named default limits for tenants)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenantgate.platform.admin.auth import AdminAccess, require_billing
from tenantgate.platform.admin.deps import After, Limit, mutation, reading
from tenantgate.platform.admin.schemas import Deleted, ListOf, PlanCreate, PlanOut, PlanUpdate, page_fields
from tenantgate.tenants import plans

router = APIRouter(prefix="/plans", tags=["plans"])


@router.post("", status_code=201, summary="Create a plan")
async def create_plan(body: PlanCreate, request: Request, identity: AdminAccess) -> PlanOut:
    async with mutation(request, identity) as op:
        plan = await plans.create_plan(op, **body.model_dump())
        return PlanOut.model_validate(plan)


@router.get("", summary="List plans", dependencies=[Depends(require_billing)])
async def list_plans(request: Request, limit: Limit = 20, after: After = None) -> ListOf[PlanOut]:
    async with reading(request) as session:
        page = await plans.list_plans(session, limit=limit, after=after)
        data = [PlanOut.model_validate(plan) for plan in page.items]
    return ListOf[PlanOut](**page_fields(data, page.has_more))


@router.get("/{plan_id}", summary="Get a plan", dependencies=[Depends(require_billing)])
async def get_plan(plan_id: str, request: Request) -> PlanOut:
    async with reading(request) as session:
        return PlanOut.model_validate(await plans.get_plan(session, plan_id))


@router.patch("/{plan_id}", summary="Update a plan (applies to its tenants within a second)")
async def update_plan(plan_id: str, body: PlanUpdate, request: Request, identity: AdminAccess) -> PlanOut:
    async with mutation(request, identity) as op:
        plan = await plans.update_plan(op, await plans.get_plan(op.session, plan_id), body.changes())
        return PlanOut.model_validate(plan)


@router.delete("/{plan_id}", summary="Delete a plan (refused while tenants use it)")
async def delete_plan(plan_id: str, request: Request, identity: AdminAccess) -> Deleted:
    async with mutation(request, identity) as op:
        await plans.delete_plan(op, await plans.get_plan(op.session, plan_id))
    return Deleted(id=plan_id, object="plan")
