"""``tenantgate plans ...``: the CLI side of /admin/plans."""

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
)

if TYPE_CHECKING:
    from tenantgate.platform.admin.schemas import ListOf, PlanOut
    from tenantgate.tenants.operation import Operation

app = typer.Typer(no_args_is_help=True, help="Manage plans (default limits of tenants)")

PlanId = Annotated[str, typer.Argument(help="Plan id")]


def _line(plan: PlanOut) -> str:
    from tenantgate.tenants.models import QUOTA_FIELDS, RATE_LIMIT_FIELDS

    limits = limits_text(plan, (*RATE_LIMIT_FIELDS, *QUOTA_FIELDS))
    return f"{plan.id}  {plan.name}  {limits}".rstrip()


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Unique plan name")],
    rpm: Rpm = None,
    tpm: Tpm = None,
    rpd: Rpd = None,
    max_concurrency: MaxConcurrency = None,
    model: Models = None,
    monthly_token_quota: TokenQuota = None,
    monthly_budget_usd: Budget = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a plan."""
    from tenantgate.platform.admin.schemas import PlanCreate, PlanOut
    from tenantgate.tenants import plans

    body = validated(
        PlanCreate,
        given(
            name=name,
            rpm=rpm,
            tpm=tpm,
            rpd=rpd,
            max_concurrency=max_concurrency,
            allowed_models=model,
            monthly_token_quota=monthly_token_quota,
            monthly_budget_usd=monthly_budget_usd,
        ),
    )

    async def work(op: Operation) -> PlanOut:
        return PlanOut.model_validate(await plans.create_plan(op, **body.model_dump()))

    plan = run(lambda s: mutate(s, work))
    emit(as_json, plan, f"created plan {plan.id} ({plan.name})")


@app.command("list")
def list_(limit: Limit = 100, after: After = None, as_json: JsonFlag = False) -> None:
    """List plans, newest first."""
    from tenantgate.platform.admin.schemas import ListOf, PlanOut, page_fields
    from tenantgate.tenants import plans

    async def query(session: Any) -> ListOf[PlanOut]:
        page = await plans.list_plans(session, limit=limit, after=after)
        data = [PlanOut.model_validate(p) for p in page.items]
        return ListOf[PlanOut](**page_fields(data, page.has_more))

    result = run_in_session(query)
    emit(as_json, result, list_lines(result.data, _line, result.has_more))


@app.command("get")
def get(plan_id: PlanId, as_json: JsonFlag = False) -> None:
    """Show a plan."""
    from tenantgate.platform.admin.schemas import PlanOut
    from tenantgate.tenants import plans

    async def read(session: Any) -> PlanOut:
        return PlanOut.model_validate(await plans.get_plan(session, plan_id))

    plan = run_in_session(read)
    emit(as_json, plan, _line(plan))


@app.command("update")
def update(
    plan_id: PlanId,
    name: Annotated[str | None, typer.Option(help="New name")] = None,
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
    """Change a plan's name or limits; running servers apply them within a second."""
    from tenantgate.platform.admin.schemas import PlanOut, PlanUpdate
    from tenantgate.tenants import plans
    from tenantgate.tenants.models import QUOTA_FIELDS, RATE_LIMIT_FIELDS

    values = cleared(clear, (*RATE_LIMIT_FIELDS, *QUOTA_FIELDS))
    values |= given(
        name=name,
        rpm=rpm,
        tpm=tpm,
        rpd=rpd,
        max_concurrency=max_concurrency,
        allowed_models=model,
        monthly_token_quota=monthly_token_quota,
        monthly_budget_usd=monthly_budget_usd,
    )
    changes = validated(PlanUpdate, values).changes()

    async def work(op: Operation) -> PlanOut:
        plan = await plans.get_plan(op.session, plan_id)
        return PlanOut.model_validate(await plans.update_plan(op, plan, changes))

    plan = run(lambda s: mutate(s, work))
    emit(as_json, plan, _line(plan))


@app.command("delete")
def delete(plan_id: PlanId, as_json: JsonFlag = False) -> None:
    """Delete a plan (refused while tenants use it)."""
    from tenantgate.platform.admin.schemas import Deleted
    from tenantgate.tenants import plans

    async def work(op: Operation) -> None:
        await plans.delete_plan(op, await plans.get_plan(op.session, plan_id))

    run(lambda s: mutate(s, work))
    emit(as_json, Deleted(id=plan_id, object="plan"), f"deleted plan {plan_id}")
