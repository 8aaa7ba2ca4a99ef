"""Admin API: tenants and keys."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenantgate.database import session_scope
from tenantgate.platform.admin.auth import require_admin
from tenantgate.platform.admin.schemas import KeyCreate, KeyCreated, KeyOut, TenantCreate, TenantOut
from tenantgate.platform.errors import Conflict, NotFound
from tenantgate.platform.runtime import Runtime
from tenantgate.tenants import repository, service

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.post("/tenants", status_code=201, response_model=TenantOut, summary="Create a tenant")
async def create_tenant(body: TenantCreate, runtime: Runtime = Depends(_runtime)) -> TenantOut:
    async with session_scope(runtime.sessions) as session:
        try:
            tenant = await service.create_tenant(session, **body.model_dump())
        except service.TenantNameTaken:
            raise Conflict(f"A tenant named {body.name!r} already exists.", param="name") from None
        return TenantOut.model_validate(tenant)


@router.post(
    "/tenants/{tenant_id}/keys",
    status_code=201,
    response_model=KeyCreated,
    summary="Create an API key (the plaintext is returned once)",
)
async def create_key(tenant_id: str, body: KeyCreate, runtime: Runtime = Depends(_runtime)) -> KeyCreated:
    async with session_scope(runtime.sessions) as session:
        tenant = await repository.get_tenant(session, tenant_id)
        if tenant is None:
            raise NotFound(f"No tenant with id {tenant_id!r}.", code="tenant_not_found")
        created = await service.create_key(
            session,
            secret_key=runtime.settings.secret_key_bytes,
            tenant=tenant,
            **body.model_dump(),
        )
        out = KeyOut.model_validate(created.key)
    return KeyCreated(**out.model_dump(), key=created.plaintext)


@router.post("/keys/{key_id}/revoke", response_model=KeyOut, summary="Revoke an API key")
async def revoke_key(key_id: str, runtime: Runtime = Depends(_runtime)) -> KeyOut:
    async with session_scope(runtime.sessions) as session:
        key = await repository.get_key(session, key_id)
        if key is None:
            raise NotFound(f"No API key with id {key_id!r}.", code="key_not_found")
        await repository.revoke_key(session, key)
        out = KeyOut.model_validate(key)
    runtime.key_cache.invalidate_key(key_id)
    return out
