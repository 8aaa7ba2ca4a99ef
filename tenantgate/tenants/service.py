"""Tenant lifecycle shared by the admin API, the CLI and ``apply``. Functions flush but never commit.

Deleting is soft: the row stays (usage history refers to it), its keys are revoked and its name is free again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.ids import new_id
from tenantgate.tenants.errors import TenantDeleted, TenantNameTaken, TenantNotFound
from tenantgate.tenants.models import ApiKey, KeyStatus, Tenant, TenantStatus, utcnow
from tenantgate.tenants.operation import Operation, assign, summary
from tenantgate.tenants.pagination import Page, newest_first
from tenantgate.tenants.plans import get_plan

__all__ = ["TenantNameTaken"]


async def get_tenant(session: AsyncSession, tenant_id: str, *, param: str | None = None) -> Tenant:
    """Any tenant, deleted ones included (they stay readable for billing)."""
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise TenantNotFound(tenant_id, param=param)
    return tenant


async def live_tenant(session: AsyncSession, tenant_id: str, *, param: str | None = None) -> Tenant:
    """A tenant that may still be changed (not deleted)."""
    tenant = await get_tenant(session, tenant_id, param=param)
    if tenant.status == TenantStatus.DELETED:
        raise TenantDeleted(tenant_id)
    return tenant


async def find_tenant(session: AsyncSession, name: str) -> Tenant | None:
    """The live tenant with this name."""
    return (
        await session.scalars(select(Tenant).where(Tenant.name == name, Tenant.status != TenantStatus.DELETED))
    ).first()


async def list_tenants(
    session: AsyncSession,
    *,
    status: TenantStatus | None = None,
    plan_id: str | None = None,
    name: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> Page[Tenant]:
    """Live tenants unless ``status`` asks for another; ``name`` matches a case-insensitive substring."""
    statement = select(Tenant)
    if status is None:
        statement = statement.where(Tenant.status != TenantStatus.DELETED)
    else:
        statement = statement.where(Tenant.status == status)
    if plan_id is not None:
        statement = statement.where(Tenant.plan_id == plan_id)
    if name:
        statement = statement.where(Tenant.name.icontains(name, autoescape=True))
    return await newest_first(session, statement, Tenant.id, limit=limit, after=after)


async def _flush_unique_name(op: Operation, name: str) -> None:
    try:
        await op.session.flush()
    except IntegrityError:  # a concurrent create/rename won the race for the name
        raise TenantNameTaken(name) from None


async def create_tenant(op: Operation, *, name: str, plan_id: str | None = None, **limits: Any) -> Tenant:
    if await find_tenant(op.session, name) is not None:
        raise TenantNameTaken(name)
    if plan_id is not None:
        await get_plan(op.session, plan_id, param="plan_id")
    tenant = Tenant(id=new_id("ten"), name=name, plan_id=plan_id, status=TenantStatus.ACTIVE, **limits)
    op.session.add(tenant)
    await _flush_unique_name(op, name)
    op.audit("tenant.create", tenant, tenant_id=tenant.id, after=summary(tenant))
    return tenant


async def update_tenant(op: Operation, tenant: Tenant, changes: dict[str, Any]) -> Tenant:
    name = changes.get("name")
    if name is not None and name != tenant.name and await find_tenant(op.session, name) is not None:
        raise TenantNameTaken(name)
    plan_id = changes.get("plan_id")
    if plan_id is not None:
        await get_plan(op.session, plan_id, param="plan_id")
    before = summary(tenant)
    if assign(tenant, changes):
        await _flush_unique_name(op, tenant.name)
    if op.audit_update("tenant.update", tenant, before, tenant_id=tenant.id):
        op.invalidate("tenant", tenant.id)
    return tenant


async def _set_status(op: Operation, tenant: Tenant, status: TenantStatus, action: str) -> Tenant:
    before = summary(tenant)
    if assign(tenant, {"status": status}):
        await op.session.flush()
        op.audit_update(action, tenant, before, tenant_id=tenant.id)
        op.invalidate("tenant", tenant.id)
    return tenant


async def suspend_tenant(op: Operation, tenant: Tenant) -> Tenant:
    """The tenant's keys get 403 tenant_suspended until it is resumed."""
    return await _set_status(op, tenant, TenantStatus.SUSPENDED, "tenant.suspend")


async def resume_tenant(op: Operation, tenant: Tenant) -> Tenant:
    return await _set_status(op, tenant, TenantStatus.ACTIVE, "tenant.resume")


async def delete_tenant(op: Operation, tenant: Tenant) -> Tenant:
    before = summary(tenant)
    now = utcnow()
    tenant.status = TenantStatus.DELETED
    tenant.deleted_at = now
    revoked = await op.session.execute(
        update(ApiKey)
        .where(ApiKey.tenant_id == tenant.id, ApiKey.status != KeyStatus.REVOKED)
        .values(status=KeyStatus.REVOKED, revoked_at=now)
        .execution_options(synchronize_session="fetch")
    )
    await op.session.flush()
    after = {"status": str(tenant.status), "revoked_keys": revoked.rowcount}  # type: ignore[attr-defined]
    op.audit("tenant.delete", tenant, tenant_id=tenant.id, before=before, after=after)
    op.invalidate("tenant", tenant.id)
    return tenant
