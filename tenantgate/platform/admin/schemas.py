"""Request and response schemas of the admin API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class TenantCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    rpm: int | None = Field(default=None, ge=0, description="Requests per minute for the whole tenant")
    tpm: int | None = Field(default=None, ge=0, description="Tokens per minute for the whole tenant")
    rpd: int | None = Field(default=None, ge=0, description="Requests per day for the whole tenant")
    max_concurrency: int | None = Field(default=None, ge=0, description="Requests in flight for the whole tenant")
    monthly_token_quota: int | None = Field(default=None, ge=0, description="Tokens per calendar month (UTC)")
    monthly_budget_usd: Decimal | None = Field(default=None, ge=0, description="Spend per calendar month (UTC)")


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    status: str
    plan_id: str | None
    rpm: int | None
    tpm: int | None
    rpd: int | None = None
    max_concurrency: int | None = None
    monthly_token_quota: int | None = None
    monthly_budget_usd: Decimal | None = None
    created_at: datetime


class KeyCreate(BaseModel):
    name: str = Field(default="default", min_length=1, max_length=200)
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    rpd: int | None = Field(default=None, ge=0)
    max_concurrency: int | None = Field(default=None, ge=0)


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    tenant_id: str
    name: str
    prefix: str
    status: str
    rpm: int | None
    tpm: int | None
    rpd: int | None = None
    max_concurrency: int | None = None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The plaintext key. It is shown only in this response.")
