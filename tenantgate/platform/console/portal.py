"""The tenant portal's routes: one tenant's own keys and limits, for a ``tenant`` console token or session.

The tenant comes from the credential, never from the URL or the body: every key route looks the key up and
answers 404 when it belongs to another tenant, exactly as for a key that does not exist. Usage and costs come
from the usage API (platform/usage/), which scopes a tenant session the same way. Keys are created, revoked and
rotated by the same service functions as the admin API, and audited with the tenant token as the actor.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from tenantgate.database import session_scope
from tenantgate.platform.admin.auth import AdminIdentity, require_tenant
from tenantgate.platform.admin.deps import After, Limit, mutation, reading
from tenantgate.platform.admin.schemas import (
    KeyCreated,
    KeyOut,
    KeyRotate,
    KeyRotated,
    ListOf,
    TenantKeyCreate,
    page_fields,
)
from tenantgate.platform.console.routes import CONSOLE_PATH
from tenantgate.platform.deps import sessions_of
from tenantgate.platform.errors import PermissionDenied
from tenantgate.platform.limits.routes import current_limits
from tenantgate.tenants import key_service, repository, service
from tenantgate.tenants.errors import KeyNotFound
from tenantgate.tenants.models import ApiKey, Plan, Tenant

router = APIRouter(prefix=CONSOLE_PATH + "/api/portal", tags=["console"], include_in_schema=False)


async def tenant_identity(identity: AdminIdentity = Depends(require_tenant)) -> AdminIdentity:
    """A tenant token or session (authentication refuses a suspended tenant's, and a deleted one's)."""
    if identity.tenant_id is None:
        raise PermissionDenied("This route is for a tenant's console credential.", code="insufficient_role")
    return identity


async def _own_key(session: Any, tenant_id: str, key_id: str) -> ApiKey:
    key = await repository.get_key(session, key_id)
    if key is None or key.tenant_id != tenant_id:
        raise KeyNotFound(key_id)
    return key


@router.get("/tenant")
async def own_tenant(request: Request, identity: AdminIdentity = Depends(tenant_identity)) -> dict[str, Any]:
    """The tenant's name, plan and limits as set (what is left of them: per key, /keys/{id}/limits)."""
    async with reading(request) as session:
        tenant = await session.get(Tenant, identity.tenant_id)
        assert tenant is not None
        plan = await session.get(Plan, tenant.plan_id) if tenant.plan_id else None
        return {
            "id": tenant.id,
            "name": tenant.name,
            "status": tenant.status,
            "plan": None if plan is None else {"id": plan.id, "name": plan.name},
        }


@router.get("/keys")
async def own_keys(
    request: Request, identity: AdminIdentity = Depends(tenant_identity), limit: Limit = 20, after: After = None
) -> ListOf[KeyOut]:
    """The tenant's keys, newest first, a page at a time like the admin API's lists."""
    assert identity.tenant_id is not None
    async with reading(request) as session:
        page = await key_service.list_keys(session, tenant_id=identity.tenant_id, limit=limit, after=after)
        data = [KeyOut.of(key) for key in page.items]
    return ListOf[KeyOut](**page_fields(data, page.has_more))


@router.post("/keys", status_code=201)
async def create_own_key(
    body: TenantKeyCreate, request: Request, identity: AdminIdentity = Depends(tenant_identity)
) -> KeyCreated:
    assert identity.tenant_id is not None
    async with mutation(request, identity) as op:
        tenant = await service.live_tenant(op.session, identity.tenant_id)
        created = await key_service.create_key(op, tenant=tenant, **body.model_dump())
        return KeyCreated(**KeyOut.of(created.key).model_dump(), key=created.plaintext)


@router.post("/keys/{key_id}/revoke")
async def revoke_own_key(key_id: str, request: Request, identity: AdminIdentity = Depends(tenant_identity)) -> KeyOut:
    assert identity.tenant_id is not None
    async with mutation(request, identity) as op:
        key = await _own_key(op.session, identity.tenant_id, key_id)
        return KeyOut.of(await key_service.revoke_key(op, key))


@router.post("/keys/{key_id}/rotate", status_code=201)
async def rotate_own_key(
    key_id: str, request: Request, identity: AdminIdentity = Depends(tenant_identity), body: KeyRotate | None = None
) -> KeyRotated:
    body = body or KeyRotate()
    assert identity.tenant_id is not None
    async with mutation(request, identity) as op:
        old = await _own_key(op.session, identity.tenant_id, key_id)
        created, old = await key_service.rotate_key(
            op, old, grace_seconds=body.grace_seconds, expires_at=body.expires_at
        )
        return KeyRotated(**KeyOut.of(created.key).model_dump(), key=created.plaintext, previous=KeyOut.of(old))


@router.get("/keys/{key_id}/limits")
async def own_key_limits(
    key_id: str, request: Request, identity: AdminIdentity = Depends(tenant_identity)
) -> dict[str, Any]:
    """What ``GET /v1/me`` answers that key: its and its tenant's limits and what is left of them now."""
    assert identity.tenant_id is not None
    async with session_scope(sessions_of(request)) as session:
        key = await _own_key(session, identity.tenant_id, key_id)
        tenant = await session.get(Tenant, key.tenant_id)
        assert tenant is not None
        plan = await session.get(Plan, tenant.plan_id) if tenant.plan_id else None
        principal = repository.build_principal(key, tenant, plan)
        status = key.status
    view = await current_limits(request, principal)
    view["key"]["status"] = status
    return view
