"""``tenantgate usage``: invoice-period summaries (tokens, images, characters, seconds and cost by model, per tenant)
from the command line, and
``tenantgate usage replay-rejected``, which stores the usage events the database refused once the cause is fixed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tenantgate.commands.common import JsonFlag, fail, load_settings

if TYPE_CHECKING:
    from tenantgate.tenants.metering.replay import ReplayReport

app = typer.Typer(
    invoke_without_command=True,
    help="Usage summary per tenant: requests, tokens, images, characters, seconds and cost by model for a period.",
)


def _moment(value: str, option: str) -> int:
    """Unix seconds, or an ISO date/time (UTC unless it says otherwise)."""
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither unix seconds nor an ISO date", param_hint=option) from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def period_window(period: str | None, start: str | None, end: str | None) -> tuple[int, int]:
    from tenantgate.tenants.metering import reports
    from tenantgate.tenants.metering.rollups import ceil_minute, floor_minute

    if start is not None or end is not None:
        if period is not None or start is None or end is None:
            raise typer.BadParameter("give --period, or both --start and --end", param_hint="--start/--end")
        lo, hi = _moment(start, "--start"), _moment(end, "--end")
        if hi <= lo:
            raise typer.BadParameter("--end must be after --start", param_hint="--end")
        return floor_minute(lo), ceil_minute(hi)
    try:
        return reports.month_period(period or datetime.now(UTC).strftime("%Y-%m"))
    except ValueError:
        raise typer.BadParameter("use YYYY-MM", param_hint="--period") from None


@app.callback()
def usage(
    ctx: typer.Context,
    period: Annotated[str | None, typer.Option(help="UTC month YYYY-MM (default: the current one)")] = None,
    start: Annotated[str | None, typer.Option(help="Start (unix seconds or ISO date), instead of --period")] = None,
    end: Annotated[str | None, typer.Option(help="End, exclusive (unix seconds or ISO date)")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant id")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Usage summary per tenant: requests, tokens, images, characters, seconds and cost by model for a period.
    Usage no price covers is shown as unpriced, never as a cost of 0."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    lo, hi = period_window(period, start, end)
    settings = load_settings()
    found = asyncio.run(_invoices(settings.database_url, lo, hi, tenant))
    if as_json:
        typer.echo(json.dumps({"object": "list", "period_start": lo, "period_end": hi, "data": found}))
        return
    _print_human(found, lo, hi)


async def _invoices(url: str, lo: int, hi: int, tenant: str | None) -> list[dict[str, Any]]:
    from tenantgate.database import create_engine
    from tenantgate.tenants.metering import reports

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            found = await reports.invoices(conn, start=lo, end=hi, tenant_ids=None if tenant is None else [tenant])
    finally:
        await engine.dispose()
    return [invoice.as_json() for invoice in found]


def _printable(text: str, width: int) -> str:
    """A caller-chosen name for a terminal: control characters (escape sequences) shown as ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text)[:width]


# Billed quantities beside the input, cached and output token columns, each shown when not zero: a line (and the
# total, which adds up every family) may have several, e.g. gpt-4o-mini-tts's audio tokens, or images and seconds.
_UNITS = (
    ("images", "images"),
    ("characters", "characters"),
    ("seconds", "seconds"),
    ("image_tokens", "image tokens"),
    ("input_audio_tokens", "audio input tokens"),
    ("output_audio_tokens", "audio output tokens"),
    ("web_search_calls", "web searches"),
    ("file_search_calls", "file searches"),
    ("code_interpreter_sessions", "code interpreter sessions"),
)


def _units(line: dict[str, Any]) -> str:
    return ", ".join(f"{line[field]} {label}" for field, label in _UNITS if line.get(field))


def _cost_cell(line: dict[str, Any]) -> str:
    if line["cost_usd"] is None:
        return "unpriced"
    if line["unpriced_requests"]:
        return f"{line['cost_usd']} +{line['unpriced_requests']} unpriced"
    return str(line["cost_usd"])


def _print_human(found: list[dict[str, Any]], lo: int, hi: int) -> None:
    span = f"{datetime.fromtimestamp(lo, UTC):%Y-%m-%d %H:%M} - {datetime.fromtimestamp(hi, UTC):%Y-%m-%d %H:%M} UTC"
    if not found:
        typer.echo(f"no usage in {span}")
        return
    typer.echo(f"usage {span}")
    header = f"  {'model':<32} {'requests':>10} {'input':>14} {'cached':>12} {'output':>14} {'units':>20}  cost (USD)"
    unpriced = 0
    for invoice in found:
        typer.echo(f"\n{_printable(invoice['tenant_name'] or '', 64)} ({invoice['tenant_id']})")
        typer.echo(header)
        for line in [*invoice["lines"], {**invoice["total"], "model": "total"}]:
            typer.echo(
                f"  {_printable(line['model'], 32):<32} {line['requests']:>10} {line['input_tokens']:>14} "
                f"{line['cached_input_tokens']:>12} {line['output_tokens']:>14} {_units(line):>20}  "
                f"{_cost_cell(line)}"
            )
        unpriced += invoice["total"]["unpriced_requests"]
    if unpriced:
        typer.echo(
            f"\n{unpriced} request(s) have no price and are in no cost above; `tenantgate prices missing` lists them."
        )


@app.command("replay-rejected")
def replay_rejected_command(
    spool_dir: Annotated[
        Path | None, typer.Option("--spool-dir", help="The spool directory (default: TENANTGATE_SPOOL_DIR)")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Store the usage events the database refused (rejected-events.jsonl in the spool directory), after the
    cause was fixed. Safe to run again; events still refused stay in the file. Exit status 1 if any remain."""
    import asyncio

    settings = load_settings()
    directory = spool_dir or settings.spool_dir
    if not directory.is_dir():
        raise fail(f"no spool directory at {directory}")
    try:
        report = asyncio.run(_replay(settings.database_url, directory))
    except BlockingIOError:
        raise fail(f"another replay of {directory} is running") from None
    except Exception as error:
        raise fail(f"replay stopped ({type(error).__name__}); the rejected events were kept") from None
    if as_json:
        typer.echo(json.dumps(report.as_json()))
    else:
        typer.echo(
            f"{report.rejected} rejected event(s): {report.stored} stored, {report.already_stored} already stored, "
            f"{report.still_rejected} still refused (kept in {directory / 'rejected-events.jsonl'})"
        )
    if report.still_rejected:
        raise typer.Exit(1)


async def _replay(url: str, directory: Path) -> ReplayReport:
    from tenantgate.database import create_engine, create_sessionmaker
    from tenantgate.tenants.metering.meter import load_price_overrides
    from tenantgate.tenants.metering.pricing import PriceBook
    from tenantgate.tenants.metering.replay import replay_rejected
    from tenantgate.tenants.metering.store import store_for

    engine = create_engine(url)
    store = store_for(engine)
    try:
        prices = PriceBook.load()
        await load_price_overrides(create_sessionmaker(engine), prices)
        return await replay_rejected(directory, store, prices)
    finally:
        await store.close()
        await engine.dispose()
