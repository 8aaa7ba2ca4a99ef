"""``tenantgate audit``: the CLI side of GET /admin/audit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tenantgate.commands.common import After, JsonFlag, Limit, emit, list_lines, run_in_session

if TYPE_CHECKING:
    from tenantgate.platform.admin.schemas import AuditEntryOut, ListOf

Filter = Annotated[str | None, typer.Option()]


def _line(entry: AuditEntryOut) -> str:
    change = f"  {entry.before or {}} -> {entry.after or {}}" if entry.before or entry.after else ""
    return (
        f"{entry.created_at.isoformat()}  {entry.actor_id}  {entry.action}  {entry.target_type}:{entry.target_id}"
        f"{change}"
    )


def audit(
    actor: Annotated[str | None, typer.Option(help="Admin token id, bootstrap, cli or system")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. key.revoke; 'key.' matches every key action")] = None,
    target_type: Annotated[
        str | None, typer.Option(help="plan, tenant, key, admin_token, price_override or upstream_key")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Target id")] = None,
    tenant: Annotated[str | None, typer.Option(help="Entries about this tenant or its keys")] = None,
    since: Annotated[datetime | None, typer.Option(help="From this time (UTC)")] = None,
    limit: Limit = 50,
    after: After = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the audit log of admin changes, newest first."""
    from tenantgate.platform.admin.schemas import AuditEntryOut, ListOf, page_fields
    from tenantgate.tenants.audit import list_audit

    since_utc = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since

    async def query(session: Any) -> ListOf[AuditEntryOut]:
        page = await list_audit(
            session,
            actor_id=actor,
            action=action,
            target_type=target_type,
            target_id=target,
            tenant_id=tenant,
            since=since_utc,
            limit=limit,
            after=after,
        )
        data = [AuditEntryOut.model_validate(e) for e in page.items]
        return ListOf[AuditEntryOut](**page_fields(data, page.has_more))

    result = run_in_session(query)
    emit(as_json, result, list_lines(result.data, _line, result.has_more))
