"""Admin API: tenants (create, list, get, update, suspend, resume, soft delete)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from tenantgate.platform.admin.auth import AdminAccess, AdminIdentity, require_billing
from tenantgate.platform.admin.deps import After, Limit, mutation, reading
from tenantgate.platform.admin.schemas import ListOf, TenantCreate, TenantOut, TenantUpdate, page_fields
from tenantgate.tenants import service
from tenantgate.tenants.models import Tenant, TenantStatus
from tenantgate.tenants.operation import Operation

router = APIRouter(prefix="/tenants", tags=["tenants"])
_Action = Callable[[Operation, Tenant], Awaitable[Tenant]]


@router.post("", status_code=201, summary="Create a tenant")
async def create_tenant(body: TenantCreate, request: Request, identity: AdminAccess) -> TenantOut:
    async with mutation(request, identity) as op:
        tenant = await service.create_tenant(op, **body.model_dump())
        return TenantOut.model_validate(tenant)


@router.get(
    "", summary="List tenants (live ones unless status says otherwise)", dependencies=[Depends(require_billing)]
)
async def list_tenants(
    request: Request,
    status: Annotated[TenantStatus | None, Query()] = None,
    plan_id: Annotated[str | None, Query()] = None,
    name: Annotated[str | None, Query(description="Case-insensitive part of the name")] = None,
    limit: Limit = 20,
    after: After = None,
) -> ListOf[TenantOut]:
    async with reading(request) as session:
        page = await service.list_tenants(session, status=status, plan_id=plan_id, name=name, limit=limit, after=after)
        data = [TenantOut.model_validate(tenant) for tenant in page.items]
    return ListOf[TenantOut](**page_fields(data, page.has_more))


@router.get("/{tenant_id}", summary="Get a tenant (deleted ones too)", dependencies=[Depends(require_billing)])
async def get_tenant(tenant_id: str, request: Request) -> TenantOut:
    async with reading(request) as session:
        return TenantOut.model_validate(await service.get_tenant(session, tenant_id))


@router.patch("/{tenant_id}", summary="Update a tenant's name, plan or limits")
async def update_tenant(tenant_id: str, body: TenantUpdate, request: Request, identity: AdminAccess) -> TenantOut:
    async with mutation(request, identity) as op:
        tenant = await service.live_tenant(op.session, tenant_id)
        return TenantOut.model_validate(await service.update_tenant(op, tenant, body.changes()))


async def _change(request: Request, identity: AdminIdentity, tenant_id: str, action: _Action) -> TenantOut:
    async with mutation(request, identity) as op:
        tenant = await service.live_tenant(op.session, tenant_id)
        return TenantOut.model_validate(await action(op, tenant))


@router.post("/{tenant_id}/suspend", summary="Suspend a tenant: its keys get 403 tenant_suspended")
async def suspend_tenant(tenant_id: str, request: Request, identity: AdminAccess) -> TenantOut:
    return await _change(request, identity, tenant_id, service.suspend_tenant)


@router.post("/{tenant_id}/resume", summary="Resume a suspended tenant")
async def resume_tenant(tenant_id: str, request: Request, identity: AdminAccess) -> TenantOut:
    return await _change(request, identity, tenant_id, service.resume_tenant)


@router.delete("/{tenant_id}", summary="Delete a tenant (soft: usage history is kept, keys are revoked)")
async def delete_tenant(tenant_id: str, request: Request, identity: AdminAccess) -> TenantOut:
    return await _change(request, identity, tenant_id, service.delete_tenant)
