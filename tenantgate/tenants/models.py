"""Relational model of tenants, plans and API keys.

Limits live on plans as defaults; tenants and keys may override each one (NULL = inherit). API keys are
stored only as an HMAC-SHA256 of the plaintext under the server secret, looked up by that hash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, Numeric, String, TypeDecorator, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Re-exported (``as``): their home is tenants/enums.py, which the command line imports without SQLAlchemy.
from tenantgate.tenants.enums import AdminRole as AdminRole
from tenantgate.tenants.enums import KeyStatus as KeyStatus
from tenantgate.tenants.enums import TenantStatus as TenantStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, list[str]: JSON}


class _RateLimits:
    """Per-minute, per-day and concurrency limits; NULL means inherit (or unlimited at the plan level)."""

    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    rpd: Mapped[int | None] = mapped_column(Integer)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON)


RATE_LIMIT_FIELDS = ("rpm", "tpm", "rpd", "max_concurrency", "allowed_models")
QUOTA_FIELDS = ("monthly_token_quota", "monthly_budget_usd", "batch_queue_tokens", "fair_share_weight")


class _TenantQuotas:
    monthly_token_quota: Mapped[int | None] = mapped_column(BigInteger)
    monthly_budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    # Prompt tokens of batches in flight, per model (OpenAI's batch queue limit).
    batch_queue_tokens: Mapped[int | None] = mapped_column(BigInteger)
    # The tenant's share of a saturated worker against other tenants' (platform/workslots.py); NULL: 1.
    fair_share_weight: Mapped[int | None] = mapped_column(Integer)


class Plan(_RateLimits, _TenantQuotas, Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Tenant(_RateLimits, _TenantQuotas, Base):
    __tablename__ = "tenants"
    # Names are unique among live tenants only: a soft-deleted tenant keeps its row (usage history refers to
    # it) but frees its name.
    __table_args__ = (
        Index(
            "uq_tenants_live_name",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    plan_id: Mapped[str | None] = mapped_column(ForeignKey("plans.id"))
    status: Mapped[str] = mapped_column(String(16), default=TenantStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column()


class ApiKey(_RateLimits, Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_tenant_id", "tenant_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200), default="default")
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=KeyStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class UpstreamObject(Base):
    """An object stored upstream (e.g. a Responses API response) and the tenant that created it."""

    __tablename__ = "upstream_objects"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    upstream: Mapped[str] = mapped_column(String(100))
    # "platform": the platform's upstream account holds it; "tenant": the tenant's own (BYOK key or endpoint).
    account: Mapped[str] = mapped_column(String(16), default="platform", server_default="platform")
    api_key_id: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantObject(Base):
    """An object a tenant created upstream that the gateway lists, polls or counts: files, uploads, batches,
    background responses (``kind``). Ownership itself is ``upstream_objects`` (first owner wins); a row here exists
    only for an owned id, and every query on it names the tenant (tenants/object_index.py)."""

    __tablename__ = "tenant_objects"
    __table_args__ = (
        Index("ix_tenant_objects_list", "tenant_id", "kind", "created", "id"),
        Index("ix_tenant_objects_poll", "poll_at"),
    )

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(String(32))
    api_key_id: Mapped[str | None] = mapped_column(String(40))
    upstream: Mapped[str] = mapped_column(String(100))
    account: Mapped[str] = mapped_column(String(16))
    created: Mapped[int] = mapped_column(BigInteger)
    """The upstream's ``created_at`` (Unix seconds): what lists are ordered by."""
    status: Mapped[str | None] = mapped_column(String(32))
    purpose: Mapped[str | None] = mapped_column(String(64))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The object as the upstream last answered it (what a list shows)."""
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The gateway's own bookkeeping (a batch's endpoint and what it holds against the tenant's limits)."""
    poll_at: Mapped[datetime | None] = mapped_column()
    """When the background poller should look at it next; None: nothing left to watch."""
    settled_at: Mapped[datetime | None] = mapped_column()
    deleted_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class VectorStoreUsage(Base):
    """The most ``usage_bytes`` the gateway saw a tenant's vector store hold in one UTC hour: what the Usage API's
    ``vector_stores`` family reports (tenants/vector_store_usage.py)."""

    __tablename__ = "vector_store_usage"
    __table_args__ = (Index("ix_vector_store_usage_tenant_hour", "tenant_id", "hour"),)

    vector_store_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    """Unix seconds at the start of the hour."""
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    usage_bytes: Mapped[int] = mapped_column(BigInteger)


class Lease(Base):
    """A named lease one process holds at a time (the background poller's), renewed before it expires."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column()


class TenantUpstreamKey(Base):
    """A tenant's own credential for one upstream (BYOK), encrypted at rest."""

    __tablename__ = "tenant_upstream_keys"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    upstream: Mapped[str] = mapped_column(String(100), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(String(2000))
    # The tenant's own endpoint for this upstream (e.g. its Azure resource); None = the upstream's configured one.
    base_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AdminToken(Base):
    """A named admin API token; only its HMAC is stored, like API keys."""

    __tablename__ = "admin_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()
    # Role ``tenant`` only: the one tenant this console token may see and manage.
    tenant_id: Mapped[str | None] = mapped_column(String(40))


class ConsoleSession(Base):
    """A signed-in console browser. Only an HMAC of the cookie's value is stored; the session stays valid only
    while what it was opened with does (the admin token unrevoked, the bootstrap token unchanged)."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_expires_at", "expires_at"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str | None] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200))
    credential: Mapped[str] = mapped_column(String(80))
    """The admin token's id, ``bootstrap``, or ``oidc``."""
    credential_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class AuditEntry(Base):
    """One admin mutation: who (token id), what (action, target), the change (secret-free summary), when."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_created_at", "created_at"),
        Index("ix_audit_log_target_id", "target_id"),
        Index("ix_audit_log_tenant_id", "tenant_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[str | None] = mapped_column(String(40))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(128))


class InvalidationEntry(Base):
    """A change running servers must drop cached keys for, written in the change's transaction.

    Read by server processes without Redis (tenants/invalidation_log.py). Ids only grow, also on SQLite once every
    row has been pruned (AUTOINCREMENT): readers remember the last id they saw.
    """

    __tablename__ = "invalidation_log"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012 - SQLAlchemy's declarative attribute

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
