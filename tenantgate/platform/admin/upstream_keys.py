"""Tenants' own upstream keys (BYOK): set, list (names only) and remove. Keys are never returned."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import select

from tenantgate.database import session_scope
from tenantgate.platform.admin.auth import require_admin
from tenantgate.platform.errors import NotFound
from tenantgate.platform.runtime import Runtime
from tenantgate.tenants import repository
from tenantgate.tenants.models import TenantUpstreamKey, utcnow

router = APIRouter(
    prefix="/admin/tenants/{tenant_id}/upstream-keys",
    tags=["admin: tenant upstream keys"],
    dependencies=[Depends(require_admin)],
)


class UpstreamKeySet(BaseModel):
    api_key: SecretStr = Field(min_length=1, description="The tenant's key for this upstream. Stored encrypted.")


class UpstreamKeyOut(BaseModel):
    upstream: str
    configured: bool = True
    updated_at: datetime


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _require_tenant(runtime: Runtime, tenant_id: str) -> None:
    async with runtime.sessions() as session:
        if await repository.get_tenant(session, tenant_id) is None:
            raise NotFound(f"No tenant with id {tenant_id!r}.", code="tenant_not_found")


@router.get("", response_model=list[UpstreamKeyOut], summary="Upstreams the tenant has its own key for")
async def list_upstream_keys(tenant_id: str, runtime: Runtime = Depends(_runtime)) -> list[UpstreamKeyOut]:
    await _require_tenant(runtime, tenant_id)
    async with runtime.sessions() as session:
        rows = await repository.tenant_upstream_keys(session, tenant_id)
    return [UpstreamKeyOut(upstream=row.upstream, updated_at=row.updated_at) for row in rows]


@router.put("/{upstream}", response_model=UpstreamKeyOut, summary="Set the tenant's own key for an upstream")
async def set_upstream_key(
    tenant_id: str, upstream: str, body: UpstreamKeySet, runtime: Runtime = Depends(_runtime)
) -> UpstreamKeyOut:
    if upstream not in runtime.routing.upstreams:
        raise NotFound(f"No upstream named {upstream!r} is configured.", code="upstream_not_found")
    await _require_tenant(runtime, tenant_id)
    ciphertext = runtime.secret_box.encrypt(body.api_key.get_secret_value())
    async with session_scope(runtime.sessions) as session:
        row = await session.get(TenantUpstreamKey, (tenant_id, upstream))
        if row is None:
            row = TenantUpstreamKey(tenant_id=tenant_id, upstream=upstream, ciphertext=ciphertext)
            session.add(row)
        else:
            row.ciphertext = ciphertext
            row.updated_at = utcnow()
        await session.flush()
        out = UpstreamKeyOut(upstream=upstream, updated_at=row.updated_at)
    runtime.key_cache.invalidate_tenant(tenant_id)
    return out


@router.delete("/{upstream}", status_code=204, summary="Remove the tenant's own key for an upstream")
async def delete_upstream_key(tenant_id: str, upstream: str, runtime: Runtime = Depends(_runtime)) -> Response:
    async with session_scope(runtime.sessions) as session:
        row = (
            await session.execute(
                select(TenantUpstreamKey).where(
                    TenantUpstreamKey.tenant_id == tenant_id, TenantUpstreamKey.upstream == upstream
                )
            )
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"Tenant {tenant_id!r} has no key for upstream {upstream!r}.", code="upstream_key_not_found")
        await session.delete(row)
    runtime.key_cache.invalidate_tenant(tenant_id)
    return Response(status_code=204)
