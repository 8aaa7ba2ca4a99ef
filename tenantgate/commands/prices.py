"""``tenantgate prices ...``: the CLI side of /admin/prices (price overrides), and the usage no price covered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, cast, get_args

import typer

from tenantgate.commands.common import (
    After,
    JsonFlag,
    Limit,
    emit,
    fail,
    given,
    list_lines,
    mutate,
    run,
    run_in_session,
    validated,
)

if TYPE_CHECKING:
    from tenantgate.platform.admin.schemas import ListOf, PriceOverrideOut
    from tenantgate.tenants.metering.price_overrides import PriceScope
    from tenantgate.tenants.operation import Operation

app = typer.Typer(
    no_args_is_help=True,
    help="Price overrides: a model's price (USD per 1M tokens) for everyone, a plan or a tenant, from a time on; "
    "and the models used without a price",
)

PriceId = Annotated[str, typer.Argument(help="Price override id")]


def _line(row: PriceOverrideOut) -> str:
    who = row.tenant_id or row.plan_id or "everyone"
    cached = f" cached_input={row.cached_input_per_1m}" if row.cached_input_per_1m is not None else ""
    return (
        f"{row.id}  {row.model}  {row.scope}:{who}  input={row.input_per_1m}{cached} output={row.output_per_1m}"
        f"  from {row.effective_from.isoformat()}"
    )


@app.command("set")
def set_(
    model: Annotated[str, typer.Argument(help="Model name; it also prices the model's dated snapshots")],
    input_price: Annotated[str, typer.Option("--input", help="USD per 1M input tokens")],
    output_price: Annotated[str, typer.Option("--output", help="USD per 1M output tokens")],
    cached_input_price: Annotated[
        str | None, typer.Option("--cached-input", help="USD per 1M cached input tokens (default: the input price)")
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant")] = None,
    plan: Annotated[str | None, typer.Option("--plan", help="Only tenants on this plan")] = None,
    effective_from: Annotated[
        str | None, typer.Option("--effective-from", help="ISO 8601 time, UTC unless it has an offset (default: now)")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Set a new price for MODEL (a new override; earlier ones stay in the history)."""
    from tenantgate.platform.admin.schemas import PriceOverrideCreate, PriceOverrideOut
    from tenantgate.tenants.metering import price_overrides

    body = validated(
        PriceOverrideCreate,
        given(
            model=model,
            input_per_1m=input_price,
            output_per_1m=output_price,
            cached_input_per_1m=cached_input_price,
            tenant_id=tenant,
            plan_id=plan,
            effective_from=effective_from,
        ),
    )

    async def work(op: Operation) -> PriceOverrideOut:
        return PriceOverrideOut.of(await price_overrides.create_override(op, **body.model_dump()))

    row = run(lambda s: mutate(s, work))
    emit(as_json, row, f"created price override {_line(row)}")


@app.command("list")
def list_(
    scope: Annotated[str | None, typer.Option(help="global, plan or tenant")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="This tenant's own overrides")] = None,
    plan: Annotated[str | None, typer.Option("--plan", help="This plan's overrides")] = None,
    model: Annotated[str | None, typer.Option(help="Exactly this model name")] = None,
    limit: Limit = 100,
    after: After = None,
    as_json: JsonFlag = False,
) -> None:
    """List price overrides, newest first."""
    from tenantgate.platform.admin.schemas import ListOf, PriceOverrideOut, page_fields
    from tenantgate.tenants.metering import price_overrides

    if scope is not None and scope not in get_args(price_overrides.PriceScope):
        raise fail("--scope takes one of: global, plan, tenant", 2)
    chosen = cast("PriceScope | None", scope)

    async def query(session: Any) -> ListOf[PriceOverrideOut]:
        page = await price_overrides.list_overrides(
            session, scope=chosen, tenant_id=tenant, plan_id=plan, model=model, limit=limit, after=after
        )
        data = [PriceOverrideOut.of(row) for row in page.items]
        return ListOf[PriceOverrideOut](**page_fields(data, page.has_more))

    result = run_in_session(query)
    emit(as_json, result, list_lines(result.data, _line, result.has_more))


@app.command("get")
def get(price_id: PriceId, as_json: JsonFlag = False) -> None:
    """Show a price override."""
    from tenantgate.platform.admin.schemas import PriceOverrideOut
    from tenantgate.tenants.metering import price_overrides

    async def read(session: Any) -> PriceOverrideOut:
        return PriceOverrideOut.of(await price_overrides.get_override(session, price_id))

    row = run_in_session(read)
    emit(as_json, row, _line(row))


@app.command("delete")
def delete(price_id: PriceId, as_json: JsonFlag = False) -> None:
    """Delete a price override: usage from now on is priced without it (recorded usage keeps its cost)."""
    from tenantgate.platform.admin.schemas import Deleted
    from tenantgate.tenants.metering import price_overrides

    async def work(op: Operation) -> None:
        await price_overrides.delete_override(op, await price_overrides.get_override(op.session, price_id))

    run(lambda s: mutate(s, work))
    emit(as_json, Deleted(id=price_id, object="price_override"), f"deleted price override {price_id}")


_REASONS = {
    "model": "no price for the model",
    "tier": "no price for its service tier",
    "option": "no price for its image quality/size",
    "usage": "the upstream did not report what the price needs",
    "endpoint": "its price is for another endpoint",
}


@app.command("missing")
def missing(
    period: Annotated[str | None, typer.Option(help="UTC month YYYY-MM (default: the current one)")] = None,
    start: Annotated[str | None, typer.Option(help="Start (unix seconds or ISO date), instead of --period")] = None,
    end: Annotated[str | None, typer.Option(help="End, exclusive (unix seconds or ISO date)")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant id")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Models used without a price in a period: requests, tenants, tokens and quantities, and why. Their usage is
    stored unpriced (in no cost); add a price file or an override, and usage from then on is priced."""
    from tenantgate.commands.usage import period_window
    from tenantgate.tenants.metering import reports

    lo, hi = period_window(period, start, end)

    async def query(session: Any) -> list[dict[str, Any]]:
        conn = await session.connection()
        return await reports.unpriced_usage(
            conn, start=datetime.fromtimestamp(lo, UTC), end=datetime.fromtimestamp(hi, UTC), tenant_id=tenant
        )

    rows = run_in_session(query)
    payload = {"object": "list", "period_start": lo, "period_end": hi, "data": rows}
    emit(as_json, payload, _missing_lines(rows, lo, hi))


def _missing_lines(rows: list[dict[str, Any]], lo: int, hi: int) -> str:
    span = f"{datetime.fromtimestamp(lo, UTC):%Y-%m-%d %H:%M} - {datetime.fromtimestamp(hi, UTC):%Y-%m-%d %H:%M} UTC"
    if not rows:
        return f"every billable request in {span} had a price"
    lines = [f"unpriced usage {span}"]
    for row in rows:
        model = "".join(c if c.isprintable() else "?" for c in row["model"])[:64]
        units = f", {row['quantity']} {row['quantity_unit']}" if row["quantity_unit"] else ""
        lines.append(
            f"  {model}  {row['category']}: {row['requests']} request(s) from {row['tenants']} tenant(s), "
            f"{row['input_tokens']} input / {row['output_tokens']} output tokens{units}"
            f" - {_REASONS.get(row['reason'], row['reason'])}"
        )
    return "\n".join(lines)
