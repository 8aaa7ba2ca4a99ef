"""Admin API: tenant API keys (create, list, get, update, revoke, rotate)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from tenantgate.platform.admin.auth import AdminAccess, require_billing
from tenantgate.platform.admin.deps import After, Limit, mutation, reading
from tenantgate.platform.admin.schemas import (
    KeyCreate,
    KeyCreated,
    KeyOut,
    KeyRotate,
    KeyRotated,
    KeyUpdate,
    ListOf,
    page_fields,
)
from tenantgate.tenants import key_service, service
from tenantgate.tenants.key_service import KeyState

router = APIRouter(tags=["keys"])

State = Annotated[KeyState | None, Query(description="active, expired or revoked")]


@router.post(
    "/tenants/{tenant_id}/keys",
    status_code=201,
    summary="Create an API key (the plaintext is returned once)",
)
async def create_key(tenant_id: str, body: KeyCreate, request: Request, identity: AdminAccess) -> KeyCreated:
    async with mutation(request, identity) as op:
        tenant = await service.live_tenant(op.session, tenant_id)
        created = await key_service.create_key(op, tenant=tenant, **body.model_dump())
        return KeyCreated(**KeyOut.of(created.key).model_dump(), key=created.plaintext)


@router.get("/tenants/{tenant_id}/keys", summary="List a tenant's keys", dependencies=[Depends(require_billing)])
async def list_tenant_keys(
    tenant_id: str, request: Request, status: State = None, limit: Limit = 20, after: After = None
) -> ListOf[KeyOut]:
    async with reading(request) as session:
        await service.get_tenant(session, tenant_id)
        page = await key_service.list_keys(session, tenant_id=tenant_id, state=status, limit=limit, after=after)
        data = [KeyOut.of(key) for key in page.items]
    return ListOf[KeyOut](**page_fields(data, page.has_more))


@router.get("/keys", summary="List keys of every tenant", dependencies=[Depends(require_billing)])
async def list_keys(
    request: Request,
    tenant_id: Annotated[str | None, Query()] = None,
    name: Annotated[str | None, Query()] = None,
    status: State = None,
    limit: Limit = 20,
    after: After = None,
) -> ListOf[KeyOut]:
    async with reading(request) as session:
        page = await key_service.list_keys(
            session, tenant_id=tenant_id, name=name, state=status, limit=limit, after=after
        )
        data = [KeyOut.of(key) for key in page.items]
    return ListOf[KeyOut](**page_fields(data, page.has_more))


@router.get("/keys/{key_id}", summary="Get a key (never its plaintext)", dependencies=[Depends(require_billing)])
async def get_key(key_id: str, request: Request) -> KeyOut:
    async with reading(request) as session:
        return KeyOut.of(await key_service.get_key(session, key_id))


@router.patch("/keys/{key_id}", summary="Update a key's name, limits, allowed models or expiry")
async def update_key(key_id: str, body: KeyUpdate, request: Request, identity: AdminAccess) -> KeyOut:
    async with mutation(request, identity) as op:
        key = await key_service.update_key(op, await key_service.get_key(op.session, key_id), body.changes())
        return KeyOut.of(key)


@router.post("/keys/{key_id}/revoke", summary="Revoke a key (refused everywhere within a second)")
async def revoke_key(key_id: str, request: Request, identity: AdminAccess) -> KeyOut:
    async with mutation(request, identity) as op:
        return KeyOut.of(await key_service.revoke_key(op, await key_service.get_key(op.session, key_id)))


@router.post(
    "/keys/{key_id}/rotate",
    status_code=201,
    summary="Rotate a key: a new key now, the old one keeps working for the grace period",
)
async def rotate_key(key_id: str, request: Request, identity: AdminAccess, body: KeyRotate | None = None) -> KeyRotated:
    body = body or KeyRotate()
    async with mutation(request, identity) as op:
        old = await key_service.get_key(op.session, key_id)
        created, old = await key_service.rotate_key(
            op, old, grace_seconds=body.grace_seconds, expires_at=body.expires_at
        )
        return KeyRotated(**KeyOut.of(created.key).model_dump(), key=created.plaintext, previous=KeyOut.of(old))
