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
    PlainSerializer,
    StringConstraints,
    field_validator,
    model_validator,
)

from tenantgate.tenants.key_service import key_state
from tenantgate.tenants.models import AdminRole, ApiKey

_INT32 = 2**31 - 1

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Count = Annotated[int, Field(ge=0, le=_INT32)]
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=6),
    PlainSerializer(float, return_type=float, when_used="json"),
]


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A time without an offset is taken as UTC.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ModelList = Annotated[list[ModelName], Field(max_length=1000), AfterValidator(lambda v: sorted(set(v)))]


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


class RateLimits(BaseModel):
    rpm: Count | None = Field(default=None, description="Requests per minute")
    tpm: Count | None = Field(default=None, description="Tokens (prompt + completion) per minute")
    rpd: Count | None = Field(default=None, description="Requests per day")
    max_concurrency: Count | None = Field(default=None, description="Requests in flight at once")
    allowed_models: ModelList | None = Field(default=None, description="Models that may be used; null = all")


class Quotas(BaseModel):
    monthly_token_quota: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = Field(
        default=None, description="Tokens per calendar month (UTC)"
    )
    monthly_budget_usd: Money | None = Field(default=None, description="Spend per calendar month (UTC), in USD")


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
    role: AdminRole = Field(description="admin: everything; billing: read-only (usage, tenants, plans, keys)")


class AdminTokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    role: AdminRole
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class AdminTokenCreated(AdminTokenOut):
    token: str = Field(description="The plaintext token. It is shown only in this response.")


# --- audit -----------------------------------------------------------------------------------------------------


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: datetime
    actor_id: str = Field(description="Admin token id, 'bootstrap' (settings token), 'cli' or 'system'")
    actor_role: str | None
    action: str = Field(examples=["tenant.suspend", "key.rotate"])
    target_type: Literal["plan", "tenant", "key", "admin_token"]
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
