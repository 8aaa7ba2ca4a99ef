"""Plan lifecycle: the named default limits tenants inherit. Functions flush, never commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.ids import new_id
from tenantgate.tenants.errors import PlanInUse, PlanNameTaken, PlanNotFound
from tenantgate.tenants.invalidation import ALL
from tenantgate.tenants.models import Plan, Tenant, TenantStatus
from tenantgate.tenants.operation import Operation, assign, summary
from tenantgate.tenants.pagination import Page, newest_first


async def get_plan(session: AsyncSession, plan_id: str, *, param: str | None = None) -> Plan:
    plan = await session.get(Plan, plan_id)
    if plan is None:
        raise PlanNotFound(plan_id, param=param)
    return plan


async def find_plan(session: AsyncSession, name: str) -> Plan | None:
    return (await session.scalars(select(Plan).where(Plan.name == name))).first()


async def list_plans(session: AsyncSession, *, limit: int = 100, after: str | None = None) -> Page[Plan]:
    return await newest_first(session, select(Plan), Plan.id, limit=limit, after=after)


async def tenants_on_plan(session: AsyncSession, plan_id: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Tenant).where(Tenant.plan_id == plan_id, Tenant.status != TenantStatus.DELETED)
    )
    return int(count or 0)


async def _flush_unique_name(op: Operation, name: str) -> None:
    # The name check before is the friendly path; this catches a concurrent create of the same name (the
    # transaction is lost either way, so no savepoint).
    try:
        await op.session.flush()
    except IntegrityError:
        raise PlanNameTaken(name) from None


async def create_plan(op: Operation, *, name: str, **limits: Any) -> Plan:
    if await find_plan(op.session, name) is not None:
        raise PlanNameTaken(name)
    plan = Plan(id=new_id("plan"), name=name, **limits)
    op.session.add(plan)
    await _flush_unique_name(op, name)
    op.audit("plan.create", plan, after=summary(plan))
    return plan


async def update_plan(op: Operation, plan: Plan, changes: dict[str, Any]) -> Plan:
    name = changes.get("name")
    if name is not None and name != plan.name and await find_plan(op.session, name) is not None:
        raise PlanNameTaken(name)
    before = summary(plan)
    if assign(plan, changes):
        await _flush_unique_name(op, plan.name)
    if op.audit_update("plan.update", plan, before, tenant_id=None):
        # Every tenant on the plan may be affected; plan edits are rare, so drop every cached key.
        op.invalidate(ALL.scope)
    return plan


async def delete_plan(op: Operation, plan: Plan) -> None:
    in_use = await tenants_on_plan(op.session, plan.id)
    if in_use:
        raise PlanInUse(plan.id, in_use)
    # Deleted tenants keep their rows for the usage history; they forget the plan.
    await op.session.execute(update(Tenant).where(Tenant.plan_id == plan.id).values(plan_id=None))
    op.audit("plan.delete", plan, before=summary(plan))
    await op.session.delete(plan)
    await op.session.flush()
