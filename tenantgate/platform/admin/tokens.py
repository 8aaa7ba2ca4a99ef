"""Admin API: named admin tokens with a role (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from tenantgate.platform.admin.auth import AdminAccess, require_admin
from tenantgate.platform.admin.deps import After, Limit, mutation, reading
from tenantgate.platform.admin.schemas import (
    AdminTokenCreate,
    AdminTokenCreated,
    AdminTokenOut,
    ListOf,
    page_fields,
)
from tenantgate.tenants import admin_tokens

router = APIRouter(prefix="/tokens", tags=["admin tokens"])


@router.post("", status_code=201, summary="Create an admin token (the plaintext is returned once)")
async def create_token(body: AdminTokenCreate, request: Request, identity: AdminAccess) -> AdminTokenCreated:
    async with mutation(request, identity) as op:
        created = await admin_tokens.create_token(op, name=body.name, role=body.role, tenant_id=body.tenant_id)
        return AdminTokenCreated(**AdminTokenOut.model_validate(created.token).model_dump(), token=created.plaintext)


@router.get("", summary="List admin tokens", dependencies=[Depends(require_admin)])
async def list_tokens(request: Request, limit: Limit = 20, after: After = None) -> ListOf[AdminTokenOut]:
    async with reading(request) as session:
        page = await admin_tokens.list_tokens(session, limit=limit, after=after)
        data = [AdminTokenOut.model_validate(token) for token in page.items]
    return ListOf[AdminTokenOut](**page_fields(data, page.has_more))


@router.get("/{token_id}", summary="Get an admin token", dependencies=[Depends(require_admin)])
async def get_token(token_id: str, request: Request) -> AdminTokenOut:
    async with reading(request) as session:
        return AdminTokenOut.model_validate(await admin_tokens.get_token(session, token_id))


@router.post("/{token_id}/revoke", summary="Revoke an admin token (refused from the next request on)")
async def revoke_token(token_id: str, request: Request, identity: AdminAccess) -> AdminTokenOut:
    async with mutation(request, identity) as op:
        token = await admin_tokens.revoke_token(op, await admin_tokens.get_token(op.session, token_id))
        return AdminTokenOut.model_validate(token)
