"""Config as code: make plans, tenants and keys match a declaration (``tenantgate apply FILE.yaml``).

Semantics, chosen to make applying idempotent and predictable:
- Things are matched by name: plans and tenants by their unique name, keys by name within their tenant.
- The file is the desired state of what it declares: a limit left out of the file is unset (inherit), so
  applying a file twice changes nothing the second time.
- A declared key exists when the tenant has an active (not revoked, not expired) key of that name; otherwise a
  new key is created and its plaintext returned once. During a rotation's grace period both keys share the name
  and both count as the declared key.
- A tenant's suspension is operational state: it changes only when the file says ``suspended: true|false``.
- Nothing is removed unless ``prune`` is set; then undeclared keys of declared tenants are revoked, undeclared
  tenants deleted (soft) and undeclared plans deleted. A tenant without a ``keys:`` entry has its keys left
  alone (``keys: []`` declares that it has none).
Every change goes through the lifecycle functions, so it is audited (actor ``apply``) and invalidated like an API
call. The caller owns the transaction: a dry run is the same reconciliation, rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from tenantgate.core.errors import BadRequest
from tenantgate.tenants import key_service, plans, service
from tenantgate.tenants.limit_fields import Name, Quotas, RateLimits
from tenantgate.tenants.models import QUOTA_FIELDS, RATE_LIMIT_FIELDS, ApiKey, Plan, Tenant, TenantStatus
from tenantgate.tenants.operation import Actor, Operation

APPLY_ACTOR = Actor("apply", "admin")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeySpec(_Spec, RateLimits):
    name: Name


class PlanSpec(_Spec, RateLimits, Quotas):
    name: Name


class TenantSpec(_Spec, RateLimits, Quotas):
    name: Name
    plan: Name | None = None
    suspended: bool | None = Field(default=None, description="Left as it is when not given")
    keys: list[KeySpec] | None = Field(default=None, description="Not given: the tenant's keys are not managed")

    @model_validator(mode="after")
    def _unique_keys(self) -> TenantSpec:
        _refuse_duplicates("key", [key.name for key in self.keys or []])
        return self


class ConfigSpec(_Spec):
    plans: list[PlanSpec] = []
    tenants: list[TenantSpec] = []

    @model_validator(mode="after")
    def _unique_names(self) -> ConfigSpec:
        _refuse_duplicates("plan", [plan.name for plan in self.plans])
        _refuse_duplicates("tenant", [tenant.name for tenant in self.tenants])
        return self


def _refuse_duplicates(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {name!r} is declared twice")
        seen.add(name)


class ApplyError(BadRequest):
    code = "invalid_config"


@dataclass(frozen=True, slots=True)
class Change:
    action: Literal["create", "update", "suspend", "resume", "revoke", "delete"]
    kind: Literal["plan", "tenant", "key"]
    name: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def describe(self) -> str:
        sign = {"create": "+", "delete": "-", "revoke": "-"}.get(self.action, "~")
        if self.action == "create":
            detail = " ".join(f"{k}={_show(new)}" for k, (_, new) in self.fields.items())
        elif self.action == "update":
            detail = " ".join(f"{k}: {_show(old)} -> {_show(new)}" for k, (old, new) in self.fields.items())
        else:
            detail = f"({self.action})"
        return f"{sign} {self.kind} {self.name}  {detail}".rstrip()

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "fields": {k: [_plain(old), _plain(new)] for k, (old, new) in self.fields.items()},
        }


@dataclass(frozen=True, slots=True)
class NewKey:
    tenant: str
    name: str
    id: str
    prefix: str
    key: str


@dataclass
class ApplyResult:
    changes: list[Change] = field(default_factory=list)
    new_keys: list[NewKey] = field(default_factory=list)


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(value) or "[]"
    return str(_plain(value))


def _same(current: Any, desired: Any) -> bool:
    if isinstance(current, list) and isinstance(desired, list):
        return sorted(current) == sorted(desired)
    return bool(current == desired)


def _delta(obj: Any, desired: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (getattr(obj, k), v) for k, v in desired.items() if not _same(getattr(obj, k), v)}


def _limits(spec: BaseModel, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in fields}


async def reconcile(op: Operation, spec: ConfigSpec, *, prune: bool) -> ApplyResult:
    result = ApplyResult()
    plan_ids = await _reconcile_plans(op, spec, result)
    plan_names = {plan_id: name for name, plan_id in plan_ids.items()}
    for tenant_spec in spec.tenants:
        tenant = await _reconcile_tenant(op, tenant_spec, plan_ids, plan_names, result)
        if tenant_spec.keys is not None:
            await _reconcile_keys(op, tenant, tenant_spec.keys, result, prune=prune)
    if prune:
        await _prune(op, spec, result)
    return result


async def _reconcile_plans(op: Operation, spec: ConfigSpec, result: ApplyResult) -> dict[str, str]:
    ids = {plan.name: plan.id for plan in (await op.session.scalars(select(Plan))).all()}
    for plan_spec in spec.plans:
        desired = _limits(plan_spec, (*RATE_LIMIT_FIELDS, *QUOTA_FIELDS))
        plan = await plans.find_plan(op.session, plan_spec.name)
        if plan is None:
            plan = await plans.create_plan(op, name=plan_spec.name, **desired)
            shown = {k: (None, v) for k, v in desired.items() if v is not None}
            result.changes.append(Change("create", "plan", plan.name, shown))
        elif delta := _delta(plan, desired):
            await plans.update_plan(op, plan, {k: new for k, (_, new) in delta.items()})
            result.changes.append(Change("update", "plan", plan.name, delta))
        ids[plan.name] = plan.id
    return ids


async def _reconcile_tenant(
    op: Operation,
    spec: TenantSpec,
    plan_ids: dict[str, str],
    plan_names: dict[str, str],
    result: ApplyResult,
) -> Tenant:
    if spec.plan is not None and spec.plan not in plan_ids:
        raise ApplyError(f"tenant {spec.name!r}: plan {spec.plan!r} is neither declared nor known")
    desired = {"plan_id": plan_ids.get(spec.plan or ""), **_limits(spec, (*RATE_LIMIT_FIELDS, *QUOTA_FIELDS))}
    tenant = await service.find_tenant(op.session, spec.name)
    if tenant is None:
        tenant = await service.create_tenant(op, name=spec.name, **desired)
        shown = {k: (None, v) for k, v in desired.items() if v is not None and k != "plan_id"}
        if spec.plan:
            shown = {"plan": (None, spec.plan), **shown}
        result.changes.append(Change("create", "tenant", tenant.name, shown))
    elif delta := _delta(tenant, desired):
        await service.update_tenant(op, tenant, {k: new for k, (_, new) in delta.items()})
        if "plan_id" in delta:
            old, new = delta.pop("plan_id")
            delta = {"plan": (plan_names.get(old, old), plan_names.get(new, new)), **delta}
        result.changes.append(Change("update", "tenant", tenant.name, delta))
    if spec.suspended is not None and (tenant.status == TenantStatus.SUSPENDED) != spec.suspended:
        if spec.suspended:
            await service.suspend_tenant(op, tenant)
        else:
            await service.resume_tenant(op, tenant)
        result.changes.append(Change("suspend" if spec.suspended else "resume", "tenant", tenant.name))
    return tenant


async def _reconcile_keys(
    op: Operation, tenant: Tenant, specs: list[KeySpec], result: ApplyResult, *, prune: bool
) -> None:
    live: dict[str, list[ApiKey]] = {}
    for key in (await op.session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant.id))).all():
        if key_service.key_state(key) == "active":
            live.setdefault(key.name, []).append(key)
    for key_spec in specs:
        label = f"{tenant.name}/{key_spec.name}"
        desired = _limits(key_spec, RATE_LIMIT_FIELDS)
        existing = live.get(key_spec.name, [])
        if not existing:
            created = await key_service.create_key(op, tenant=tenant, name=key_spec.name, **desired)
            key = created.key
            result.new_keys.append(NewKey(tenant.name, key.name, key.id, key.prefix, created.plaintext))
            shown = {k: (None, v) for k, v in desired.items() if v is not None}
            result.changes.append(Change("create", "key", label, shown))
        for key in existing:
            if delta := _delta(key, desired):
                await key_service.update_key(op, key, {k: new for k, (_, new) in delta.items()})
                result.changes.append(Change("update", "key", label, delta))
    if prune:
        declared = {key_spec.name for key_spec in specs}
        for name, keys in live.items():
            if name not in declared:
                for key in keys:
                    await key_service.revoke_key(op, key)
                    result.changes.append(Change("revoke", "key", f"{tenant.name}/{name}"))


async def _prune(op: Operation, spec: ConfigSpec, result: ApplyResult) -> None:
    declared_tenants = {tenant.name for tenant in spec.tenants}
    live = (await op.session.scalars(select(Tenant).where(Tenant.status != TenantStatus.DELETED))).all()
    for tenant in live:
        if tenant.name not in declared_tenants:
            await service.delete_tenant(op, tenant)
            result.changes.append(Change("delete", "tenant", tenant.name))
    declared_plans = {plan.name for plan in spec.plans}
    for plan in (await op.session.scalars(select(Plan))).all():
        if plan.name not in declared_plans:
            await plans.delete_plan(op, plan)
            result.changes.append(Change("delete", "plan", plan.name))
