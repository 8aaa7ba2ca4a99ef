"""Billing exports under /admin/usage: incremental event sync, a tenant's period as CSV, invoice summaries."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from tenantgate.platform.admin.auth import require_billing
from tenantgate.platform.deps import EngineDep
from tenantgate.platform.errors import BadRequest, ServiceUnavailable
from tenantgate.tenants.metering import reports
from tenantgate.tenants.metering.rollups import ceil_minute, floor_minute
from tenantgate.tenants.metering.usage_event import UsageEventOut

router = APIRouter(prefix="/admin/usage", tags=["billing"], dependencies=[Depends(require_billing)])


_MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime can hold


def resolve_period(period: str | None, start_time: int | None, end_time: int | None) -> tuple[int, int]:
    """``period`` (YYYY-MM) or ``start_time``/``end_time``; neither: the current UTC month."""
    if period is not None:
        if start_time is not None or end_time is not None:
            raise BadRequest("Give either period or start_time/end_time, not both.", param="period")
        try:
            return reports.month_period(period)
        except ValueError:
            raise BadRequest("period must look like 2026-11.", param="period") from None
    if start_time is None and end_time is None:
        return reports.month_period(datetime.now(UTC).strftime("%Y-%m"))
    if start_time is None or end_time is None:
        raise BadRequest("Give both start_time and end_time (or period).", param="start_time")
    if end_time <= start_time:
        raise BadRequest("end_time must be after start_time.", param="end_time")
    if end_time > _MAX_TIMESTAMP:  # beyond datetime's range: was an OverflowError, a 500
        raise BadRequest(f"end_time must be at most {_MAX_TIMESTAMP} (9999-12-31).", param="end_time")
    return start_time, end_time


class EventsPage(BaseModel):
    object: Literal["list"]
    data: list[UsageEventOut]  # type: ignore[valid-type]  # a model derived from UsageEvent at import
    has_more: bool
    next_cursor: str = Field(description="Poll again with it (as `after`) for what was ingested since")


@router.get(
    "/events",
    summary="Raw usage events in ingestion order, for incremental billing sync",
    response_model=EventsPage,
)
async def list_events(
    engine: EngineDep,
    after: str | None = Query(None, description="`next_cursor` of the previous page; omit to start at the beginning"),
    limit: int = Query(1000, ge=1, le=10_000),
    tenant_id: str | None = Query(None, description="Only this tenant's events"),
) -> dict[str, Any]:
    try:
        position = reports.decode_cursor(after) if after else 0
    except reports.InvalidCursor:
        raise BadRequest("Invalid cursor: pass `next_cursor` of a previous page.", param="after") from None
    try:
        async with engine.connect() as conn:
            rows, has_more = await reports.events_after(conn, position, limit, tenant_id=tenant_id)
    except (SQLAlchemyError, OSError):
        raise ServiceUnavailable("Usage data is unavailable right now; try again shortly.") from None
    last = rows[-1].seq if rows else position
    return {
        "object": "list",
        "data": [reports.event_json(row) for row in rows],
        "has_more": has_more,
        # Always returned: poll again later with it to get what was ingested since.
        "next_cursor": reports.encode_cursor(last),
    }


@router.get("/export.csv", summary="Usage events of a period as CSV (one tenant, or all)")
async def export_csv(
    engine: EngineDep,
    tenant_id: str | None = Query(None, description="Only this tenant's events"),
    period: str | None = Query(None, description="A UTC month, YYYY-MM (default: the current one)"),
    start_time: int | None = Query(None, ge=0, description="Unix seconds, inclusive (instead of period)"),
    end_time: int | None = Query(None, ge=0, description="Unix seconds, exclusive (instead of period)"),
) -> StreamingResponse:
    start, end = resolve_period(period, start_time, end_time)
    rows = reports.events_csv(
        engine,
        tenant_id=tenant_id,
        start=datetime.fromtimestamp(start, UTC),
        end=datetime.fromtimestamp(end, UTC),
    )
    # Only id characters in the header: any other character (non-Latin-1, CR/LF, quotes) made the response a 500.
    label = re.sub(r"[^A-Za-z0-9_-]", "_", tenant_id) if tenant_id else "all"
    filename = f"usage-{label}-{start}-{end}.csv"
    return StreamingResponse(
        rows, media_type="text/csv", headers={"content-disposition": f'attachment; filename="{filename}"'}
    )


@router.get("/invoices", summary="Tokens and cost by model, per tenant, for an invoice period")
async def list_invoices(
    engine: EngineDep,
    period: str | None = Query(None, description="A UTC month, YYYY-MM (default: the current one)"),
    start_time: int | None = Query(None, ge=0),
    end_time: int | None = Query(None, ge=0),
    tenant_id: str | None = Query(None, description="Only this tenant"),
) -> dict[str, Any]:
    start, end = resolve_period(period, start_time, end_time)
    start, end = floor_minute(start), ceil_minute(end)  # rollups resolve to the minute
    try:
        async with engine.connect() as conn:
            found = await reports.invoices(
                conn, start=start, end=end, tenant_ids=None if tenant_id is None else [tenant_id]
            )
    except (SQLAlchemyError, OSError):
        raise ServiceUnavailable("Usage data is unavailable right now; try again shortly.") from None
    return {"object": "list", "data": [invoice.as_json() for invoice in found]}
