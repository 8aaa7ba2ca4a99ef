"""Console sign-in sessions: the value of a browser's session cookie, stored only as an HMAC, like API keys.

A session is opened by presenting a credential (an admin, billing or tenant token, the bootstrap token, or an
OpenID Connect sign-in) and lives until it expires, is signed out, or what opened it stops being valid (checked
on every request by the HTTP layer: platform/console/session.py).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.tenants.keys import hash_key
from tenantgate.tenants.models import AdminRole, ConsoleSession, utcnow

SESSION_PREFIX = "tgs-"


async def open_session(
    session: AsyncSession,
    secret_key: bytes,
    *,
    role: AdminRole,
    subject: str,
    credential: str,
    credential_hash: str | None = None,
    tenant_id: str | None = None,
    lifetime: timedelta,
) -> str:
    """A new session's cookie value (shown to the browser only; the database keeps its HMAC)."""
    plaintext = SESSION_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    # Expired sessions go as new ones come: no sweeper task, and the table stays the size of live sessions.
    await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
    session.add(
        ConsoleSession(
            id_hash=hash_key(secret_key, plaintext),
            role=role.value,
            tenant_id=tenant_id,
            subject=subject[:200],
            credential=credential[:80],
            credential_hash=credential_hash,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    await session.flush()
    return plaintext


async def find_session(session: AsyncSession, secret_key: bytes, plaintext: str) -> ConsoleSession | None:
    """The live session with this cookie value, or None (unknown, signed out or expired)."""
    if not plaintext.startswith(SESSION_PREFIX) or len(plaintext) > 100:
        return None
    row = await session.get(ConsoleSession, hash_key(secret_key, plaintext))
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    return row


async def close_session(session: AsyncSession, secret_key: bytes, plaintext: str) -> None:
    row = await find_session(session, secret_key, plaintext)
    if row is not None:
        row.revoked_at = utcnow()
        await session.flush()
