"""One admin mutation: its transaction, who performs it, and what it audits and invalidates.

Every lifecycle function (admin API, CLI, ``apply``) takes an Operation, so none of them can forget the audit
entry. The caller writes the collected cache invalidations to the invalidation log just before committing
(``log_invalidations``), and publishes them on Redis once the transaction has committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.ids import new_id
from tenantgate.tenants import invalidation_log
from tenantgate.tenants.invalidation import Invalidation, Scope
from tenantgate.tenants.metering.models import PriceOverrideRow
from tenantgate.tenants.models import (
    QUOTA_FIELDS,
    RATE_LIMIT_FIELDS,
    AdminToken,
    ApiKey,
    AuditEntry,
    Base,
    Plan,
    Tenant,
    TenantUpstreamKey,
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who changes something: an admin token id (``bootstrap`` for the settings token), ``cli`` or ``system``."""

    id: str
    role: str | None = None
    request_id: str | None = None


CLI_ACTOR = Actor("cli", "admin")
SYSTEM_ACTOR = Actor("system", "admin")

# What the audit log may show of each object. Never key or token hashes, never plaintexts.
_SUMMARY_FIELDS: dict[type[Base], tuple[str, ...]] = {
    Plan: ("name", *RATE_LIMIT_FIELDS, *QUOTA_FIELDS),
    Tenant: ("name", "status", "plan_id", *RATE_LIMIT_FIELDS, *QUOTA_FIELDS),
    ApiKey: ("tenant_id", "name", "prefix", "status", "expires_at", "revoked_at", *RATE_LIMIT_FIELDS),
    AdminToken: ("name", "role", "prefix", "revoked_at"),
    PriceOverrideRow: (
        "tenant_id",
        "plan_id",
        "model",
        "input_per_1m",
        "cached_input_per_1m",
        "output_per_1m",
        "effective_from",
    ),
}
TARGET_TYPES: dict[type[Base], str] = {
    Plan: "plan",
    Tenant: "tenant",
    ApiKey: "key",
    AdminToken: "admin_token",
    PriceOverrideRow: "price_override",
    TenantUpstreamKey: "upstream_key",  # target id: the upstream's name (the tenant is in tenant_id)
}


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)  # plain str, also for StrEnum members
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def summary(obj: Base) -> dict[str, Any]:
    return {field: _json_safe(getattr(obj, field)) for field in _SUMMARY_FIELDS[type(obj)]}


def diff(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    changed = [k for k in after if before.get(k) != after[k]]
    return {k: before.get(k) for k in changed}, {k: after[k] for k in changed}


class Operation:
    def __init__(self, session: AsyncSession, actor: Actor, secret_key: bytes) -> None:
        self.session = session
        self.actor = actor
        self.secret_key = secret_key
        self.invalidations: list[Invalidation] = []
        self.audited: list[AuditEntry] = []

    def invalidate(self, scope: Scope, id_: str = "") -> None:
        invalidation = Invalidation(scope, id_)
        if invalidation not in self.invalidations:
            self.invalidations.append(invalidation)

    async def log_invalidations(self) -> None:
        """Write the invalidations to the log, in this transaction: the last statement before the commit."""
        await invalidation_log.append(self.session, self.invalidations)

    def audit(
        self,
        action: str,
        target: Base,
        *,
        tenant_id: str | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        target_id: str | None = None,
    ) -> None:
        """Record a change of ``target``, identified by its ``id`` column unless ``target_id`` is given."""
        entry = AuditEntry(
            id=new_id("aud"),
            actor_id=self.actor.id,
            actor_role=self.actor.role,
            action=action,
            target_type=TARGET_TYPES[type(target)],
            target_id=target_id if target_id is not None else getattr(target, "id"),  # noqa: B009
            tenant_id=tenant_id,
            before=before,
            after=after,
            request_id=self.actor.request_id,
        )
        self.session.add(entry)
        self.audited.append(entry)

    def audit_update(self, action: str, target: Base, before: dict[str, Any], *, tenant_id: str | None) -> bool:
        """Audit the fields that changed since ``before`` (a summary); False when nothing changed."""
        changed_before, changed_after = diff(before, summary(target))
        if not changed_after:
            return False
        self.audit(action, target, tenant_id=tenant_id, before=changed_before, after=changed_after)
        return True


def assign(obj: Base, changes: dict[str, Any]) -> bool:
    """Set the fields whose value differs (so an update to equal values writes nothing); True if any did."""
    changed = False
    for field, value in changes.items():
        if getattr(obj, field) != value:
            setattr(obj, field, value)
            changed = True
    return changed
