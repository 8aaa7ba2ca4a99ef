"""Admin: read any key's limits and what is left of them (GET /admin/keys/{key_id}/limits)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from tenantgate.database import session_scope
from tenantgate.platform.admin.auth import require_admin
from tenantgate.platform.deps import sessions_of
from tenantgate.platform.errors import NotFound
from tenantgate.platform.limits.routes import current_limits
from tenantgate.tenants import repository
from tenantgate.tenants.models import Plan, Tenant

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.get("/keys/{key_id}/limits", summary="A key's and its tenant's limits and remaining amounts")
async def key_limits(key_id: str, request: Request) -> dict[str, Any]:
    async with session_scope(sessions_of(request)) as session:
        key = await repository.get_key(session, key_id)
        tenant = await session.get(Tenant, key.tenant_id) if key is not None else None
        if key is None or tenant is None:
            raise NotFound(f"No API key with id {key_id!r}.", code="key_not_found")
        plan = await session.get(Plan, tenant.plan_id) if tenant.plan_id else None
        principal = repository.build_principal(key, tenant, plan)
        status = key.status
    view = await current_limits(request, principal)
    view["key"]["status"] = status
    return view
