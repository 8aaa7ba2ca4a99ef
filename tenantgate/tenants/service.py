"""Tenant and key operations shared by the CLI and the admin API. They flush but never commit."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.ids import new_id
from tenantgate.tenants.keys import generate_key
from tenantgate.tenants.models import ApiKey, Tenant


class TenantNameTaken(Exception):
    pass


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    plaintext: str


async def create_tenant(
    session: AsyncSession,
    *,
    name: str,
    rpm: int | None = None,
    tpm: int | None = None,
    rpd: int | None = None,
    max_concurrency: int | None = None,
    monthly_token_quota: int | None = None,
    monthly_budget_usd: Decimal | None = None,
) -> Tenant:
    if (await session.execute(select(Tenant.id).where(Tenant.name == name))).first() is not None:
        raise TenantNameTaken(name)
    tenant = Tenant(
        id=new_id("ten"),
        name=name,
        rpm=rpm,
        tpm=tpm,
        rpd=rpd,
        max_concurrency=max_concurrency,
        monthly_token_quota=monthly_token_quota,
        monthly_budget_usd=monthly_budget_usd,
    )
    session.add(tenant)
    await session.flush()
    return tenant


async def create_key(
    session: AsyncSession,
    *,
    secret_key: bytes,
    tenant: Tenant,
    name: str = "default",
    rpm: int | None = None,
    tpm: int | None = None,
    rpd: int | None = None,
    max_concurrency: int | None = None,
) -> CreatedKey:
    new_key = generate_key(secret_key)
    key = ApiKey(
        id=new_id("key"),
        tenant_id=tenant.id,
        name=name,
        prefix=new_key.prefix,
        key_hash=new_key.key_hash,
        rpm=rpm,
        tpm=tpm,
        rpd=rpd,
        max_concurrency=max_concurrency,
    )
    session.add(key)
    await session.flush()
    return CreatedKey(key=key, plaintext=new_key.plaintext)
