"""Billing exports: raw events in ingestion order (incremental sync), a tenant's period as CSV, invoice summaries.

The sync cursor is the ingestion sequence ``seq``. Batches commit in ``seq`` order (store.py), so a billing system
that resumes after the last ``seq`` it saw never misses an event, even one that reached the database hours late
after an outage; and since event ids are unique, re-reading a page is harmless.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenantgate.tenants.metering.models import UsageEventRow
from tenantgate.tenants.metering.pricing import NANOS_PER_USD
from tenantgate.tenants.metering.rollups import Totals, UsageQuery, aggregate
from tenantgate.tenants.models import Tenant

E = UsageEventRow
_CURSOR_PREFIX = "seq:"

EVENT_FIELDS = (
    "id",
    "request_id",
    "occurred_at",
    "tenant_id",
    "api_key_id",
    "endpoint",
    "category",
    "model",
    "upstream",
    "upstream_model",
    "response_model",
    "status",
    "stream",
    "billable",
    "usage_source",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "image_tokens",
    "quantity",
    "latency_ms",
    "ttft_ms",
    "client_disconnected",
    "error_type",
    "attempts",
    "cost_usd",
    "price_version",
    "ingested_at",
)


class InvalidCursor(ValueError):
    pass


def usd(nanos: int) -> str:
    """Exact decimal string of an amount in nano-USD (9 decimal places)."""
    return f"{Decimal(nanos) / NANOS_PER_USD:.9f}"


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError
        seq = int(raw[len(_CURSOR_PREFIX) :])
    except (ValueError, UnicodeDecodeError):
        raise InvalidCursor(cursor) from None
    if seq < 0:
        raise InvalidCursor(cursor)
    return seq


def month_period(period: str) -> tuple[int, int]:
    """``YYYY-MM`` as ``[first second of the month, first second of the next)`` in UTC; ValueError otherwise."""
    start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return int(start.timestamp()), int(end.timestamp())


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_json(row: Any) -> dict[str, Any]:
    """An event row (a ``usage_events`` row read through a Core connection) as JSON."""
    out: dict[str, Any] = {"object": "usage.event"}
    for name in EVENT_FIELDS:
        if name == "cost_usd":
            out[name] = usd(row.cost_input_nusd + row.cost_cached_input_nusd + row.cost_output_nusd)
        elif name in ("occurred_at", "ingested_at"):
            out[name] = _iso(getattr(row, name))
        else:
            out[name] = getattr(row, name)
    out["cost_nano_usd"] = {
        "input": row.cost_input_nusd,
        "cached_input": row.cost_cached_input_nusd,
        "output": row.cost_output_nusd,
    }
    return out


async def events_after(
    conn: AsyncConnection, after: int, limit: int, *, tenant_id: str | None
) -> tuple[list[Any], bool]:
    """Events with ``seq > after`` in ``seq`` order, and whether more follow."""
    statement = select(E).where(E.seq > after).order_by(E.seq).limit(limit + 1)
    if tenant_id is not None:
        statement = statement.where(E.tenant_id == tenant_id)
    rows = list((await conn.execute(statement)).all())
    return rows[:limit], len(rows) > limit


async def events_csv(
    engine: AsyncEngine, *, tenant_id: str | None, start: datetime, end: datetime, page: int = 5000
) -> AsyncIterator[str]:
    """Events with ``start <= occurred_at < end`` (one tenant's, or all) as CSV, read in keyset pages so memory
    stays bounded: one tenant's in time order (its index), all tenants' in ingestion order (the primary key)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EVENT_FIELDS)
    yield _drain(buffer)
    after: tuple[datetime, int] | None = None
    while True:
        statement = select(E).where(E.occurred_at >= start, E.occurred_at < end).limit(page)
        if tenant_id is not None:
            statement = statement.where(E.tenant_id == tenant_id).order_by(E.occurred_at, E.seq)
            if after is not None:
                statement = statement.where(tuple_(E.occurred_at, E.seq) > tuple_(*after))
        else:
            statement = statement.order_by(E.seq)
            if after is not None:
                statement = statement.where(E.seq > after[1])
        async with engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        for row in rows:
            event = event_json(row)
            writer.writerow(["" if event[name] is None else event[name] for name in EVENT_FIELDS])
        yield _drain(buffer)
        if len(rows) < page:
            return
        after = (rows[-1].occurred_at, rows[-1].seq)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


@dataclass(slots=True)
class InvoiceLine:
    model: str
    totals: Totals

    def as_json(self) -> dict[str, Any]:
        t = self.totals
        return {
            "model": self.model,
            "requests": t["requests"],
            "estimated_requests": t["estimated_requests"],
            "input_tokens": t["input_tokens"],
            "cached_input_tokens": t["cached_input_tokens"],
            "output_tokens": t["output_tokens"],
            "reasoning_tokens": t["reasoning_tokens"],
            "cost_usd": usd(t.cost_nusd),
        }


@dataclass(slots=True)
class Invoice:
    tenant_id: str
    tenant_name: str | None
    start: int
    end: int
    lines: list[InvoiceLine] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        total = Totals()
        for line in self.lines:
            total.add(line.totals)
        return {
            "object": "usage.invoice_summary",
            "tenant_id": self.tenant_id,
            "tenant_name": self.tenant_name,
            "period_start": self.start,
            "period_end": self.end,
            "currency": "usd",
            "lines": [line.as_json() for line in self.lines],
            "total": {**InvoiceLine("*", total).as_json(), "model": None},
        }


async def invoices(
    conn: AsyncConnection, *, start: int, end: int, tenant_ids: Sequence[str] | None = None
) -> list[Invoice]:
    """Tokens and cost by model for each tenant with usage in ``[start, end)`` (whole minutes)."""
    query = UsageQuery(
        start=start,
        end=end,
        width=end - start,
        group_by=("tenant_id", "model"),
        project_ids=None if tenant_ids is None else tuple(tenant_ids),
    )
    buckets = await aggregate(conn, query, tenant_id=None)
    by_tenant: dict[str, Invoice] = {}
    for (tenant_id, model), totals in sorted(buckets.get(0, {}).items(), key=lambda item: str(item[0])):
        invoice = by_tenant.setdefault(str(tenant_id), Invoice(str(tenant_id), None, start, end))
        invoice.lines.append(InvoiceLine(str(model), totals))
    if by_tenant:
        names = await conn.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(list(by_tenant))))
        for tenant_id, name in names.all():
            by_tenant[tenant_id].tenant_name = name
    return [by_tenant[t] for t in sorted(by_tenant)]
