"""Tenants' own upstream keys (BYOK): set, list and remove. Keys are never returned.

A record may carry the tenant's own base URL for the upstream (its Azure resource, its OpenAI-compatible
endpoint); it is checked by the SSRF guard (platform/upstream/guard.py) before anything is stored. Setting and
removing are audited (``upstream_key.set``, ``upstream_key.delete``) with the base URL before and after (an
endpoint holds no secret, and a change of its path is as worth seeing as one of its host), never the key or
anything derived from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantgate.platform.admin.auth import AdminAccess, require_admin
from tenantgate.platform.admin.deps import mutation
from tenantgate.platform.deps import SessionsDep, routing_of, secret_box_of, upstream_guard_of
from tenantgate.platform.errors import BadRequest, NotFound
from tenantgate.platform.upstream.guard import TenantUpstreamGuard, UpstreamURLRefused
from tenantgate.platform.upstream.registry import Routing
from tenantgate.tenants import repository
from tenantgate.tenants.models import TenantUpstreamKey, utcnow
from tenantgate.tenants.secrets import SecretBox

router = APIRouter(
    prefix="/admin/tenants/{tenant_id}/upstream-keys",
    tags=["admin: tenant upstream keys"],
    dependencies=[Depends(require_admin)],
)


class UpstreamKeySet(BaseModel):
    model_config = ConfigDict(extra="forbid")  # like every other write: a misspelt field is a 422, not ignored

    api_key: SecretStr = Field(min_length=1, description="The tenant's key for this upstream. Stored encrypted.")
    base_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="The tenant's own endpoint for this upstream, in the same form as the upstream's configured "
        "base_url (e.g. https://my-resource.openai.azure.com for Azure). Omitted: the configured endpoint. "
        "Must be https and must not reach internal addresses unless an operator allows them.",
    )


class UpstreamKeyOut(BaseModel):
    upstream: str
    configured: bool = True
    base_url: str | None = None
    updated_at: datetime


async def _require_tenant(sessions: async_sessionmaker[AsyncSession], tenant_id: str) -> None:
    async with sessions() as session:
        if await repository.get_tenant(session, tenant_id) is None:
            raise NotFound(f"No tenant with id {tenant_id!r}.", code="tenant_not_found")


@router.get("", response_model=list[UpstreamKeyOut], summary="Upstreams the tenant has its own key for")
async def list_upstream_keys(tenant_id: str, sessions: SessionsDep) -> list[UpstreamKeyOut]:
    await _require_tenant(sessions, tenant_id)
    async with sessions() as session:
        rows = await repository.tenant_upstream_keys(session, tenant_id)
    return [UpstreamKeyOut(upstream=row.upstream, base_url=row.base_url, updated_at=row.updated_at) for row in rows]


def _audit_summary(row: TenantUpstreamKey) -> dict[str, Any]:
    return {
        "upstream": row.upstream,
        "base_url": row.base_url,
    }


@router.put("/{upstream}", response_model=UpstreamKeyOut, summary="Set the tenant's own key for an upstream")
async def set_upstream_key(
    tenant_id: str,
    upstream: str,
    body: UpstreamKeySet,
    request: Request,
    identity: AdminAccess,
    sessions: SessionsDep,
    routing: Routing = Depends(routing_of),
    guard: TenantUpstreamGuard = Depends(upstream_guard_of),
    secret_box: SecretBox = Depends(secret_box_of),
) -> UpstreamKeyOut:
    if upstream not in routing.upstreams:
        raise NotFound(f"No upstream named {upstream!r} is configured.", code="upstream_not_found")
    await _require_tenant(sessions, tenant_id)
    base_url = None
    if body.base_url is not None:
        try:
            base_url = await guard.check(body.base_url)
        except UpstreamURLRefused as exc:
            raise BadRequest(str(exc), param="base_url", code="invalid_base_url") from None
    ciphertext = secret_box.encrypt(body.api_key.get_secret_value())
    async with mutation(request, identity) as op:
        row = await op.session.get(TenantUpstreamKey, (tenant_id, upstream))
        before = None if row is None else _audit_summary(row)
        if row is None:
            row = TenantUpstreamKey(tenant_id=tenant_id, upstream=upstream, ciphertext=ciphertext, base_url=base_url)
            op.session.add(row)
        else:  # PUT replaces the record: a base_url left out goes back to the upstream's own endpoint
            row.ciphertext = ciphertext
            row.base_url = base_url
            row.updated_at = utcnow()
        await op.session.flush()
        # Always an entry, even when only the key changed: a replaced credential is worth knowing about.
        op.audit(
            "upstream_key.set",
            row,
            target_id=_target_id(upstream),
            tenant_id=tenant_id,
            before=before,
            after=_audit_summary(row),
        )
        op.invalidate("tenant", tenant_id)
        out = UpstreamKeyOut(upstream=upstream, base_url=base_url, updated_at=row.updated_at)
    return out


@router.delete("/{upstream}", status_code=204, summary="Remove the tenant's own key for an upstream")
async def delete_upstream_key(tenant_id: str, upstream: str, request: Request, identity: AdminAccess) -> Response:
    async with mutation(request, identity) as op:
        row = (
            await op.session.execute(
                select(TenantUpstreamKey).where(
                    TenantUpstreamKey.tenant_id == tenant_id, TenantUpstreamKey.upstream == upstream
                )
            )
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"Tenant {tenant_id!r} has no key for upstream {upstream!r}.", code="upstream_key_not_found")
        op.audit(
            "upstream_key.delete", row, target_id=_target_id(upstream), tenant_id=tenant_id, before=_audit_summary(row)
        )
        await op.session.delete(row)
        op.invalidate("tenant", tenant_id)
    return Response(status_code=204)


def _target_id(upstream: str) -> str:
    # The audit log's target ids are at most 64 characters; upstream names are the operator's and short.
    return upstream[:64]
