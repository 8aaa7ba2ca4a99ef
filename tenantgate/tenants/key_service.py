"""API key lifecycle: create (plaintext returned once), update, revoke, rotate. Functions flush, never commit.

A key's stored status is ``active`` or ``revoked``; ``expired`` is derived from ``expires_at``, which the auth
middleware checks on every request, so an expiry (set directly or by a rotation's grace period) needs no job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.ids import new_id
from tenantgate.tenants.errors import KeyNotFound, KeyRevoked, TenantDeleted
from tenantgate.tenants.keys import generate_key
from tenantgate.tenants.models import RATE_LIMIT_FIELDS, ApiKey, KeyStatus, Tenant, TenantStatus, utcnow
from tenantgate.tenants.operation import Operation, assign, summary
from tenantgate.tenants.pagination import Page, newest_first

KeyState = Literal["active", "expired", "revoked"]


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    plaintext: str


def key_state(key: ApiKey, now: datetime | None = None) -> KeyState:
    if key.status == KeyStatus.REVOKED:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


async def get_key(session: AsyncSession, key_id: str) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise KeyNotFound(key_id)
    return key


async def list_keys(
    session: AsyncSession,
    *,
    tenant_id: str | None = None,
    state: KeyState | None = None,
    name: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> Page[ApiKey]:
    statement = select(ApiKey)
    if tenant_id is not None:
        statement = statement.where(ApiKey.tenant_id == tenant_id)
    if name is not None:
        statement = statement.where(ApiKey.name == name)
    now = utcnow()
    if state == "revoked":
        statement = statement.where(ApiKey.status == KeyStatus.REVOKED)
    elif state == "expired":
        statement = statement.where(ApiKey.status != KeyStatus.REVOKED, ApiKey.expires_at <= now)
    elif state == "active":
        statement = statement.where(
            ApiKey.status != KeyStatus.REVOKED, or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)
        )
    return await newest_first(session, statement, ApiKey.id, limit=limit, after=after)


async def create_key(
    op: Operation,
    *,
    tenant: Tenant,
    name: str = "default",
    expires_at: datetime | None = None,
    **limits: Any,
) -> CreatedKey:
    if tenant.status == TenantStatus.DELETED:
        raise TenantDeleted(tenant.id)
    new_key = generate_key(op.secret_key)
    key = ApiKey(
        id=new_id("key"),
        tenant_id=tenant.id,
        name=name,
        prefix=new_key.prefix,
        key_hash=new_key.key_hash,
        status=KeyStatus.ACTIVE,
        expires_at=expires_at,
        **limits,
    )
    op.session.add(key)
    await op.session.flush()
    op.audit("key.create", key, tenant_id=tenant.id, after=summary(key))
    return CreatedKey(key=key, plaintext=new_key.plaintext)


def _changeable(key: ApiKey) -> ApiKey:
    if key.status == KeyStatus.REVOKED:
        raise KeyRevoked(key.id)
    return key


async def update_key(op: Operation, key: ApiKey, changes: dict[str, Any]) -> ApiKey:
    _changeable(key)
    before = summary(key)
    if assign(key, changes):
        await op.session.flush()
    if op.audit_update("key.update", key, before, tenant_id=key.tenant_id):
        op.invalidate("key", key.id)
    return key


async def revoke_key(op: Operation, key: ApiKey) -> ApiKey:
    """Idempotent: revoking a revoked key changes (and audits) nothing."""
    if key.status != KeyStatus.REVOKED:
        before = summary(key)
        key.status = KeyStatus.REVOKED
        key.revoked_at = utcnow()
        await op.session.flush()
        op.audit_update("key.revoke", key, before, tenant_id=key.tenant_id)
        op.invalidate("key", key.id)
    return key


async def rotate_key(
    op: Operation, key: ApiKey, *, grace_seconds: float, expires_at: datetime | None = None
) -> tuple[CreatedKey, ApiKey]:
    """A new key with the old one's name and limits; the old one keeps working for ``grace_seconds``.

    An old key that already expires sooner keeps its earlier expiry.
    """
    _changeable(key)
    tenant = await op.session.get(Tenant, key.tenant_id)
    assert tenant is not None  # foreign key
    limits = {field: getattr(key, field) for field in RATE_LIMIT_FIELDS}
    created = await create_key(op, tenant=tenant, name=key.name, expires_at=expires_at, **limits)
    before = summary(key)
    deadline = utcnow() + timedelta(seconds=grace_seconds)
    if key.expires_at is None or key.expires_at > deadline:
        key.expires_at = deadline
        await op.session.flush()
    op.audit(
        "key.rotate",
        key,
        tenant_id=key.tenant_id,
        before={"expires_at": before["expires_at"]},
        after={"expires_at": summary(key)["expires_at"], "replaced_by": created.key.id},
    )
    op.invalidate("key", key.id)
    return created, key
