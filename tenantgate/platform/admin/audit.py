"""Admin API: the audit log of admin mutations (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from tenantgate.platform.admin.auth import require_admin
from tenantgate.platform.admin.deps import After, Limit, reading
from tenantgate.platform.admin.schemas import AuditEntryOut, ListOf, UtcDatetime, page_fields
from tenantgate.tenants.audit import list_audit

router = APIRouter(prefix="/audit", tags=["audit"])

Filter = Annotated[str | None, Query()]


@router.get("", summary="Audit log, newest first", dependencies=[Depends(require_admin)])
async def audit_log(
    request: Request,
    actor_id: Annotated[str | None, Query(description="Admin token id, 'bootstrap', 'cli' or 'system'")] = None,
    action: Annotated[str | None, Query(description="e.g. key.revoke; 'key.' matches every key action")] = None,
    target_type: Annotated[
        str | None, Query(description="plan, tenant, key, admin_token, price_override or upstream_key")
    ] = None,
    target_id: Filter = None,
    tenant_id: Annotated[str | None, Query(description="Entries about this tenant or its keys")] = None,
    request_id: Filter = None,
    since: Annotated[UtcDatetime | None, Query(description="From this time (ISO 8601 or unix seconds)")] = None,
    until: Annotated[UtcDatetime | None, Query(description="Before this time")] = None,
    limit: Limit = 50,
    after: After = None,
) -> ListOf[AuditEntryOut]:
    async with reading(request) as session:
        page = await list_audit(
            session,
            actor_id=actor_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            tenant_id=tenant_id,
            request_id=request_id,
            since=since,
            until=until,
            limit=limit,
            after=after,
        )
        data = [AuditEntryOut.model_validate(entry) for entry in page.items]
    return ListOf[AuditEntryOut](**page_fields(data, page.has_more))
