"""Reading the audit log (entries are written by ``Operation.audit`` inside each mutation's transaction)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.tenants.models import AuditEntry
from tenantgate.tenants.pagination import Page, newest_first


async def list_audit(
    session: AsyncSession,
    *,
    actor_id: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    tenant_id: str | None = None,
    request_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    after: str | None = None,
) -> Page[AuditEntry]:
    """Newest first. ``action`` ending in ``.`` matches a family (``key.`` = every key action)."""
    statement = select(AuditEntry)
    if action is not None:
        if action.endswith("."):
            statement = statement.where(AuditEntry.action.startswith(action, autoescape=True))
        else:
            statement = statement.where(AuditEntry.action == action)
    for column, value in (
        (AuditEntry.actor_id, actor_id),
        (AuditEntry.target_type, target_type),
        (AuditEntry.target_id, target_id),
        (AuditEntry.tenant_id, tenant_id),
        (AuditEntry.request_id, request_id),
    ):
        if value is not None:
            statement = statement.where(column == value)
    if since is not None:
        statement = statement.where(AuditEntry.created_at >= since)
    if until is not None:
        statement = statement.where(AuditEntry.created_at < until)
    return await newest_first(session, statement, AuditEntry.id, limit=limit, after=after)
