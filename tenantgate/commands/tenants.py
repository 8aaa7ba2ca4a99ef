"""``tenantgate tenants ...``: the CLI side of /admin/tenants."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tenantgate.commands.common import (
    After,
    Budget,
    Clear,
    JsonFlag,
    Limit,
    MaxConcurrency,
    Models,
    Rpd,
    Rpm,
    TokenQuota,
    Tpm,
    cleared,
    emit,
    given,
    limits_text,
    list_lines,
    mutate,
    run,
    run_in_session,
    validated,
    with_session,
)
from tenantgate.tenants.enums import TenantStatus

if TYPE_CHECKING:
    from tenantgate.platform.admin.schemas import ListOf, TenantOut
    from tenantgate.settings import Settings
    from tenantgate.tenants.models import Tenant
    from tenantgate.tenants.operation import Operation

app = typer.Typer(no_args_is_help=True, help="Manage tenants")

TenantId = Annotated[str, typer.Argument(help="Tenant id")]
PlanOpt = Annotated[str | None, typer.Option("--plan", help="Plan id")]


def _line(tenant: TenantOut) -> str:
    from tenantgate.tenants.models import QUOTA_FIELDS, RATE_LIMIT_FIELDS

    limits = limits_text(tenant, (*RATE_LIMIT_FIELDS, *QUOTA_FIELDS))
    return f"{tenant.id}  {tenant.name}  {tenant.status}  plan={tenant.plan_id or '-'}  {limits}".rstrip()


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Unique tenant name")],
    plan: PlanOpt = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    rpd: Rpd = None,
    max_concurrency: MaxConcurrency = None,
    model: Models = None,
    monthly_token_quota: TokenQuota = None,
    monthly_budget_usd: Budget = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a tenant. --json prints {"id", "name"}."""
    from tenantgate.platform.admin.schemas import TenantCreate
    from tenantgate.tenants import service

    body = validated(
        TenantCreate,
        given(
            name=name,
            plan_id=plan,
            rpm=rpm,
            tpm=tpm,
            rpd=rpd,
            max_concurrency=max_concurrency,
            allowed_models=model,
            monthly_token_quota=monthly_token_quota,
            monthly_budget_usd=monthly_budget_usd,
        ),
    )

    async def work(op: Operation) -> Tenant:
        return await service.create_tenant(op, **body.model_dump())

    tenant = run(lambda s: mutate(s, work))
    emit(as_json, {"id": tenant.id, "name": tenant.name}, f"created tenant {tenant.id} ({tenant.name})")


@app.command("list")
def list_(
    status: Annotated[TenantStatus | None, typer.Option(help="Default: active and suspended")] = None,
    plan: PlanOpt = None,
    name: Annotated[str | None, typer.Option(help="Part of the name (case-insensitive)")] = None,
    limit: Limit = 20,
    after: After = None,
    as_json: JsonFlag = False,
) -> None:
    """List tenants, newest first."""
    from tenantgate.platform.admin.schemas import ListOf, TenantOut, page_fields
    from tenantgate.tenants import service

    async def query(session: Any) -> ListOf[TenantOut]:
        page = await service.list_tenants(session, status=status, plan_id=plan, name=name, limit=limit, after=after)
        data = [TenantOut.model_validate(t) for t in page.items]
        return ListOf[TenantOut](**page_fields(data, page.has_more))

    result = run_in_session(query)
    emit(as_json, result, list_lines(result.data, _line, result.has_more))


def _show(tenant_id: str, as_json: bool, action: Any = None) -> None:
    from tenantgate.platform.admin.schemas import TenantOut
    from tenantgate.tenants import service

    async def work(settings: Settings) -> TenantOut:
        if action is None:

            async def read(session: Any) -> TenantOut:
                return TenantOut.model_validate(await service.get_tenant(session, tenant_id))

            return await with_session(settings, read)

        async def change(op: Operation) -> TenantOut:
            return TenantOut.model_validate(await action(op, await service.live_tenant(op.session, tenant_id)))

        return await mutate(settings, change)

    tenant = run(work)
    emit(as_json, tenant, _line(tenant))


@app.command("get")
def get(tenant_id: TenantId, as_json: JsonFlag = False) -> None:
    """Show a tenant (deleted ones too)."""
    _show(tenant_id, as_json)


@app.command("update")
def update(
    tenant_id: TenantId,
    name: Annotated[str | None, typer.Option(help="New name")] = None,
    plan: PlanOpt = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    rpd: Rpd = None,
    max_concurrency: MaxConcurrency = None,
    model: Models = None,
    monthly_token_quota: TokenQuota = None,
    monthly_budget_usd: Budget = None,
    clear: Clear = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a tenant's name, plan or limits (only the options given)."""
    from tenantgate.platform.admin.schemas import TenantUpdate
    from tenantgate.tenants import service
    from tenantgate.tenants.models import QUOTA_FIELDS, RATE_LIMIT_FIELDS

    values = cleared(clear, ("plan_id", *RATE_LIMIT_FIELDS, *QUOTA_FIELDS))
    values |= given(
        name=name,
        plan_id=plan,
        rpm=rpm,
        tpm=tpm,
        rpd=rpd,
        max_concurrency=max_concurrency,
        allowed_models=model,
        monthly_token_quota=monthly_token_quota,
        monthly_budget_usd=monthly_budget_usd,
    )
    changes = validated(TenantUpdate, values).changes()

    async def apply(op: Operation, tenant: Tenant) -> Tenant:
        return await service.update_tenant(op, tenant, changes)

    _show(tenant_id, as_json, apply)


@app.command("suspend")
def suspend(tenant_id: TenantId, as_json: JsonFlag = False) -> None:
    """Suspend a tenant: its keys get 403 tenant_suspended (from running servers within a second)."""
    from tenantgate.tenants import service

    _show(tenant_id, as_json, service.suspend_tenant)


@app.command("resume")
def resume(tenant_id: TenantId, as_json: JsonFlag = False) -> None:
    """Resume a suspended tenant."""
    from tenantgate.tenants import service

    _show(tenant_id, as_json, service.resume_tenant)


@app.command("delete")
def delete(tenant_id: TenantId, as_json: JsonFlag = False) -> None:
    """Delete a tenant (soft: its usage history is kept; its keys are revoked; its name is free again)."""
    from tenantgate.tenants import service

    _show(tenant_id, as_json, service.delete_tenant)
