"""Named admin API tokens with a role. Like API keys, only HMAC-SHA256(secret_key, token) is stored."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.ids import new_id
from tenantgate.tenants.errors import AdminTokenNotFound
from tenantgate.tenants.keys import hash_key
from tenantgate.tenants.models import AdminRole, AdminToken, utcnow
from tenantgate.tenants.operation import Operation, summary
from tenantgate.tenants.pagination import Page, newest_first
from tenantgate.tenants.service import live_tenant

TOKEN_PREFIX = "tga-"
_DISPLAY_PREFIX_LEN = len(TOKEN_PREFIX) + 8


@dataclass(frozen=True, slots=True)
class CreatedToken:
    token: AdminToken
    plaintext: str


async def token_for_plaintext(session: AsyncSession, secret_key: bytes, plaintext: str) -> AdminToken | None:
    """The unrevoked token with this plaintext (an indexed lookup of its HMAC), or None."""
    if not plaintext.startswith(TOKEN_PREFIX):
        return None
    token_hash = hash_key(secret_key, plaintext)
    return (
        await session.scalars(
            select(AdminToken).where(AdminToken.token_hash == token_hash, AdminToken.revoked_at.is_(None))
        )
    ).first()


async def get_token(session: AsyncSession, token_id: str) -> AdminToken:
    token = await session.get(AdminToken, token_id)
    if token is None:
        raise AdminTokenNotFound(token_id)
    return token


async def list_tokens(session: AsyncSession, *, limit: int = 100, after: str | None = None) -> Page[AdminToken]:
    return await newest_first(session, select(AdminToken), AdminToken.id, limit=limit, after=after)


async def create_token(op: Operation, *, name: str, role: AdminRole, tenant_id: str | None = None) -> CreatedToken:
    """``tenant_id`` (role ``tenant`` only) must name a tenant that is not deleted."""
    if tenant_id is not None:
        await live_tenant(op.session, tenant_id, param="tenant_id")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = AdminToken(
        id=new_id("adm"),
        name=name,
        role=role,
        prefix=plaintext[:_DISPLAY_PREFIX_LEN],
        token_hash=hash_key(op.secret_key, plaintext),
        tenant_id=tenant_id,
    )
    op.session.add(token)
    await op.session.flush()
    op.audit("admin_token.create", token, after=summary(token), tenant_id=tenant_id)
    return CreatedToken(token=token, plaintext=plaintext)


async def revoke_token(op: Operation, token: AdminToken) -> AdminToken:
    """Takes effect on the next request: admin tokens are looked up on every admin request, never cached."""
    if token.revoked_at is None:
        before = summary(token)
        token.revoked_at = utcnow()
        await op.session.flush()
        op.audit_update("admin_token.revoke", token, before, tenant_id=token.tenant_id)
    return token
