"""Queries on tenants, plans and keys. Callers own the session and the transaction."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.core.principal import Limits, Principal
from tenantgate.tenants.models import ApiKey, KeyStatus, Plan, Tenant, TenantStatus, TenantUpstreamKey


def _pick(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


def _allowed(*lists: list[str] | None) -> frozenset[str] | None:
    allowed: frozenset[str] | None = None
    for models in lists:
        if models is not None:
            allowed = frozenset(models) if allowed is None else allowed & frozenset(models)
    return allowed


def _month_version(tenant: Tenant, plan: Plan | None) -> int:
    """The last change of the tenant's or its plan's row (ms): its month counters must be seeded after it."""
    stamps = [tenant.updated_at, plan.updated_at if plan is not None else None]
    return max((int(stamp.timestamp() * 1000) for stamp in stamps if stamp is not None), default=0)


def build_principal(key: ApiKey, tenant: Tenant, plan: Plan | None) -> Principal:
    return Principal(
        key_id=key.id,
        key_prefix=key.prefix,
        key_name=key.name,
        tenant_id=tenant.id,
        tenant_name=tenant.name,
        tenant_active=tenant.status == TenantStatus.ACTIVE,
        expires_at=key.expires_at.timestamp() if key.expires_at else None,
        key_limits=Limits(rpm=key.rpm, tpm=key.tpm, rpd=key.rpd, max_concurrency=key.max_concurrency),
        tenant_limits=Limits(
            rpm=_pick(tenant.rpm, plan.rpm if plan else None),
            tpm=_pick(tenant.tpm, plan.tpm if plan else None),
            rpd=_pick(tenant.rpd, plan.rpd if plan else None),
            max_concurrency=_pick(tenant.max_concurrency, plan.max_concurrency if plan else None),
            monthly_token_quota=_pick(tenant.monthly_token_quota, plan.monthly_token_quota if plan else None),
            monthly_budget_usd=tenant.monthly_budget_usd
            if tenant.monthly_budget_usd is not None
            else (plan.monthly_budget_usd if plan else None),
            batch_queue_tokens=_pick(tenant.batch_queue_tokens, plan.batch_queue_tokens if plan else None),
            month_version=_month_version(tenant, plan),
        ),
        allowed_models=_allowed(plan.allowed_models if plan else None, tenant.allowed_models, key.allowed_models),
        fair_share_weight=_pick(tenant.fair_share_weight, plan.fair_share_weight if plan else None) or 1,
    )


async def principal_for_key_hash(session: AsyncSession, key_hash: str) -> Principal | None:
    """The principal of an active key of a non-deleted tenant, or None."""
    row = (
        await session.execute(
            select(ApiKey, Tenant, Plan)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .outerjoin(Plan, Plan.id == Tenant.plan_id)
            .where(
                ApiKey.key_hash == key_hash,
                ApiKey.status == KeyStatus.ACTIVE,
                Tenant.status != TenantStatus.DELETED,
            )
        )
    ).first()
    if row is None:
        return None
    key, tenant, plan = row
    return build_principal(key, tenant, plan)


async def tenant_upstream_keys(session: AsyncSession, tenant_id: str) -> list[TenantUpstreamKey]:
    result = await session.execute(select(TenantUpstreamKey).where(TenantUpstreamKey.tenant_id == tenant_id))
    return list(result.scalars())


async def get_tenant(session: AsyncSession, tenant_id: str) -> Tenant | None:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None or tenant.status == TenantStatus.DELETED:
        return None
    return tenant


async def get_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def count_tenants(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(Tenant))).scalar_one()
