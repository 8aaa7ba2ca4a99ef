"""Request and response schemas of the admin API (the CLI prints the same shapes with ``--json``).

Limits: ``null`` means "not set at this level": a key inherits its tenant's limits, a tenant its plan's, and a
plan without a value sets no limit. Writes reject unknown fields, so a typo (``rpn``) is a 422, not a no-op.
``PATCH`` bodies change only the fields they contain; an explicit ``null`` clears an override.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tenantgate.tenants.key_service import key_state
from tenantgate.tenants.limit_fields import Count as Count
from tenantgate.tenants.limit_fields import ModelList as ModelList
from tenantgate.tenants.limit_fields import ModelName as ModelName
from tenantgate.tenants.limit_fields import Money as Money
from tenantgate.tenants.limit_fields import Name as Name
from tenantgate.tenants.limit_fields import Quotas as Quotas
from tenantgate.tenants.limit_fields import RateLimits as RateLimits
from tenantgate.tenants.metering.models import PriceOverrideRow
from tenantgate.tenants.models import AdminRole, ApiKey


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00: a 422 like any bad time, not a 500
        raise ValueError("the time is out of range once converted to UTC") from None


# A time without an offset is taken as UTC.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # PostgreSQL text cannot hold U+0000: refuse it here (a 400) rather than fail in the database (a 500).
        if _has_nul(data):
            raise ValueError("strings must not contain NUL characters (\\u0000)")
        return data


class _Patch(_Write):
    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)

    @field_validator("name", check_fields=False)
    @classmethod
    def _name_not_null(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("name cannot be null")
        return value


# --- plans -----------------------------------------------------------------------------------------------------


class PlanCreate(_Write, RateLimits, Quotas):
    name: Name


class PlanUpdate(_Patch, RateLimits, Quotas):
    name: Name | None = None


class PlanOut(RateLimits, Quotas):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    created_at: datetime
    updated_at: datetime


# --- tenants ---------------------------------------------------------------------------------------------------


class TenantCreate(_Write, RateLimits, Quotas):
    name: Name
    plan_id: str | None = Field(default=None, description="The plan whose limits the tenant inherits")


class TenantUpdate(_Patch, RateLimits, Quotas):
    name: Name | None = None
    plan_id: str | None = None


class TenantOut(RateLimits, Quotas):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    status: Literal["active", "suspended", "deleted"]
    plan_id: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


# --- keys ------------------------------------------------------------------------------------------------------


class KeyCreate(_Write, RateLimits):
    name: Name = "default"
    expires_at: UtcDatetime | None = Field(default=None, description="After this time the key is refused (401)")


class TenantKeyCreate(_Write):
    """A key a tenant creates itself in the console: its limits are the operator's to set."""

    name: Name = "default"
    expires_at: UtcDatetime | None = Field(default=None, description="After this time the key is refused (401)")


class KeyUpdate(_Patch, RateLimits):
    name: Name | None = None
    expires_at: UtcDatetime | None = None


class KeyRotate(_Write):
    grace_seconds: float = Field(
        default=3600, ge=0, le=30 * 86400, description="How long the old key keeps working (0 = stops now)"
    )
    expires_at: UtcDatetime | None = Field(default=None, description="Expiry of the new key (none by default)")


class KeyOut(RateLimits):
    model_config = ConfigDict(from_attributes=True)

    id: str
    tenant_id: str
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it")
    status: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Recorded in batches: may lag by a few seconds")
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls.model_validate(key).model_copy(update={"status": key_state(key)})


class KeyCreated(KeyOut):
    key: str = Field(description="The plaintext key. It is shown only in this response.")


class KeyRotated(KeyCreated):
    previous: KeyOut = Field(description="The rotated key, now expiring at the end of the grace period")


# --- admin tokens ----------------------------------------------------------------------------------------------


class AdminTokenCreate(_Write):
    name: Name
    role: AdminRole = Field(
        description="admin: everything; billing: read-only (usage, tenants, plans, keys); tenant: one tenant's "
        "console (its usage, limits and keys), nothing of the admin API"
    )
    tenant_id: str | None = Field(default=None, description="The tenant a `tenant` token belongs to (that role only)")

    @model_validator(mode="after")
    def _tenant_for_tenant_role(self) -> AdminTokenCreate:
        if (self.role == AdminRole.TENANT) != (self.tenant_id is not None):
            raise ValueError("tenant_id is required for the tenant role, and only for it")
        return self


class AdminTokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    role: AdminRole
    tenant_id: str | None = None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class AdminTokenCreated(AdminTokenOut):
    token: str = Field(description="The plaintext token. It is shown only in this response.")


# --- prices ----------------------------------------------------------------------------------------------------

# USD per 1M tokens. The most expensive models list a few hundred dollars. The bounds catch the grosser unit
# mistakes: a USD-per-token price needs more than 6 decimals, an expensive model's nano-USD per token exceeds 10,000.
MAX_PRICE_PER_1M = 10_000
PricePer1M = Annotated[
    Decimal,
    Field(ge=0, le=MAX_PRICE_PER_1M, decimal_places=6, description="USD per 1M tokens"),
]


class PriceOverrideCreate(_Write):
    model: ModelName = Field(
        description="A model name; it also prices the model's dated snapshots: 'gpt-4o-mini' prices "
        "'gpt-4o-mini-2024-07-18', but no other name that starts with it"
    )
    input_per_1m: PricePer1M
    output_per_1m: PricePer1M
    cached_input_per_1m: PricePer1M | None = Field(default=None, description="Default: the input price")
    tenant_id: str | None = Field(
        default=None, description="Only this tenant's usage (at most one of tenant_id, plan_id)"
    )
    plan_id: str | None = Field(default=None, description="Only the usage of tenants on this plan")
    effective_from: UtcDatetime | None = Field(
        default=None, description="From this time on (now or later; default: now)"
    )


class PriceOverrideOut(BaseModel):
    id: str
    object: Literal["price_override"] = "price_override"
    scope: Literal["global", "plan", "tenant"]
    tenant_id: str | None
    plan_id: str | None
    model: str
    input_per_1m: str = Field(description="USD per 1M tokens, as an exact decimal string")
    cached_input_per_1m: str | None = Field(description="null: cached input tokens cost the input price")
    output_per_1m: str
    effective_from: datetime
    created_at: datetime

    @classmethod
    def of(cls, row: PriceOverrideRow) -> PriceOverrideOut:
        scope = "tenant" if row.tenant_id else "plan" if row.plan_id else "global"
        columns = {name: getattr(row, name) for name in cls.model_fields if name not in ("object", "scope")}
        return cls(scope=scope, **columns)


# --- audit -----------------------------------------------------------------------------------------------------


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: datetime
    actor_id: str = Field(description="Admin token id, 'bootstrap' (settings token), 'cli' or 'system'")
    actor_role: str | None
    action: str = Field(examples=["tenant.suspend", "key.rotate"])
    target_type: Literal["plan", "tenant", "key", "admin_token", "price_override", "upstream_key"]
    target_id: str
    tenant_id: str | None
    before: dict[str, Any] | None = Field(description="Changed fields before (no secrets)")
    after: dict[str, Any] | None = Field(description="Changed fields after (no secrets)")
    request_id: str | None


# --- common ----------------------------------------------------------------------------------------------------

T = TypeVar("T")


class ListOf(BaseModel, Generic[T]):
    """One page, newest first; pass ``last_id`` as ``after`` for the next page while ``has_more``."""

    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool


class _Identified(Protocol):
    id: str


def page_fields(data: Sequence[_Identified], has_more: bool) -> dict[str, Any]:
    """The fields of a ``ListOf`` for one page of items: ``ListOf[X](**page_fields(items, has_more))``."""
    return {
        "data": data,
        "first_id": data[0].id if data else None,
        "last_id": data[-1].id if data else None,
        "has_more": has_more,
    }


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True
