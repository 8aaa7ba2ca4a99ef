"""Billing exports: raw events in ingestion order (incremental sync), a tenant's period as CSV, invoice summaries,
and the usage no price covered.

The sync cursor is the ingestion sequence ``seq``. Batches commit in ``seq`` order (store.py), so a billing system
that resumes after the last ``seq`` it saw never misses an event, even one that reached the database hours late
after an outage; and since event ids are unique, re-reading a page is harmless.

Unpriced usage is never shown as a cost of 0: an unpriced event's ``cost_usd`` is null, and a line (or total) of
which every request is unpriced has a null ``cost_usd``; otherwise ``cost_usd`` is the cost of the priced requests
and ``unpriced_requests`` says how many are not in it.

CSV cells are written for spreadsheets: a cell that a spreadsheet would read as a formula (OWASP's CSV injection:
one starting with ``=``, ``+``, ``-``, ``@``, a tab, a carriage return or another control character) gets a
leading ``'``, so ``=1+2+cmd|calc`` opens as that text. Model names, ids and error types are chosen by callers.
"""

from __future__ import annotations

import base64
import csv
import io
import unicodedata
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenantgate.tenants.metering.models import COST_PARTS, UsageEventRow
from tenantgate.tenants.metering.pricing import NANOS_PER_USD
from tenantgate.tenants.metering.rollups import Totals, UsageQuery, aggregate
from tenantgate.tenants.metering.usage_event import EXPORT_FIELDS
from tenantgate.tenants.models import Tenant

E = UsageEventRow
_CURSOR_PREFIX = "seq:"

EVENT_FIELDS = EXPORT_FIELDS  # an exported event's fields, in order (usage_event.py)
# What a family's ``quantity`` counts.
QUANTITY_UNITS = {"images": "images", "audio_speeches": "characters", "audio_transcriptions": "seconds"}
_FORMULA_STARTS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")  # and their full-width forms
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})  # controls, format characters (zero-width, BOM), line breaks
_BLANK = _INVISIBLE | {"Zs"}  # and every space separator: none of them shows before a cell's first visible character


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
            nanos = sum(getattr(row, part) for part in COST_PARTS)
            out[name] = None if row.unpriced else usd(nanos)
        elif name == "quantity_unit":
            out[name] = QUANTITY_UNITS.get(row.category)
        elif name in ("occurred_at", "ingested_at"):
            out[name] = _iso(getattr(row, name))
        else:
            out[name] = getattr(row, name)
    return out


def spreadsheet_safe(value: str) -> str:
    """``value`` as a CSV cell no spreadsheet evaluates: a leading ``'`` where it would start a formula, that is
    where its first visible character (after any run of spaces of any kind and invisible characters) starts one,
    or where that leading run hides an invisible character (a spreadsheet may drop it, or a reader miss it)."""
    for char in value:
        category = unicodedata.category(char)
        if category in _INVISIBLE:
            return "'" + value
        if category not in _BLANK:
            return "'" + value if char in _FORMULA_STARTS else value
    return value


def csv_writer(buffer: io.StringIO) -> Any:
    """RFC 4180 rows (CRLF): a cell with a line break of either kind is quoted, so it cannot split its row (with LF
    rows, a CR inside a model name was written bare, and readers took it for the end of the row)."""
    return csv.writer(buffer, lineterminator="\r\n")


def csv_cells(values: Iterable[Any]) -> list[Any]:
    """A CSV row's cells: None as empty, text made spreadsheet-safe, numbers and booleans as they are."""
    return ["" if value is None else spreadsheet_safe(value) if isinstance(value, str) else value for value in values]


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
    writer = csv_writer(buffer)
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
            writer.writerow(csv_cells(event[name] for name in EVENT_FIELDS))
        yield _drain(buffer)
        if len(rows) < page:
            return
        after = (rows[-1].occurred_at, rows[-1].seq)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


_LINE_COUNTS = (
    "requests",
    "estimated_requests",
    "unpriced_requests",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "image_tokens",
    "web_search_calls",
    "file_search_calls",
    "code_interpreter_sessions",
)
# What an invoice line's hosted tools cost, apart (they are in its cost_usd too).
_TOOL_COSTS = {
    "web_search_cost_nano_usd": "cost_web_search_nusd",
    "file_search_cost_nano_usd": "cost_file_search_nusd",
    "code_interpreter_cost_nano_usd": "cost_code_interpreter_nusd",
}


def _cost(nanos: int, requests: int, unpriced: int) -> str | None:
    return None if requests and unpriced == requests else usd(nanos)


@dataclass(slots=True)
class InvoiceLine:
    """One model's usage in one family (its quantity is in that family's unit)."""

    model: str
    category: str
    totals: Totals

    def as_json(self) -> dict[str, Any]:
        t = self.totals
        line: dict[str, Any] = {"model": self.model, "category": self.category}
        line.update((name, t[name]) for name in _LINE_COUNTS)
        unit = QUANTITY_UNITS.get(self.category)
        line.update((name, t["quantity"] if name == unit else 0) for name in QUANTITY_UNITS.values())
        line.update((name, t[part]) for name, part in _TOOL_COSTS.items())
        line["cost_usd"] = _cost(t.cost_nusd, t["requests"], t["unpriced_requests"])
        line["cost_nano_usd"] = t.cost_nusd
        return line


@dataclass(slots=True)
class Invoice:
    tenant_id: str
    tenant_name: str | None
    start: int
    end: int
    lines: list[InvoiceLine] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        lines = [line.as_json() for line in self.lines]
        total: dict[str, Any] = {"model": None, "category": None}
        for name in (*_LINE_COUNTS, *QUANTITY_UNITS.values(), *_TOOL_COSTS, "cost_nano_usd"):
            total[name] = sum(line[name] for line in lines)
        total["cost_usd"] = _cost(total["cost_nano_usd"], total["requests"], total["unpriced_requests"])
        return {
            "object": "usage.invoice_summary",
            "tenant_id": self.tenant_id,
            "tenant_name": self.tenant_name,
            "period_start": self.start,
            "period_end": self.end,
            "currency": "usd",
            "lines": lines,
            "total": total,
        }


async def invoices(
    conn: AsyncConnection, *, start: int, end: int, tenant_ids: Sequence[str] | None = None
) -> list[Invoice]:
    """Usage and cost by model and family for each tenant with usage in ``[start, end)`` (whole minutes)."""
    query = UsageQuery(
        start=start,
        end=end,
        width=end - start,
        group_by=("tenant_id", "model", "category"),
        project_ids=None if tenant_ids is None else tuple(tenant_ids),
    )
    buckets = await aggregate(conn, query, tenant_id=None)
    by_tenant: dict[str, Invoice] = {}
    for (tenant_id, model, category), totals in sorted(buckets.get(0, {}).items(), key=lambda item: str(item[0])):
        invoice = by_tenant.setdefault(str(tenant_id), Invoice(str(tenant_id), None, start, end))
        invoice.lines.append(InvoiceLine(str(model), str(category), totals))
    if by_tenant:
        names = await conn.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(list(by_tenant))))
        for tenant_id, name in names.all():
            by_tenant[tenant_id].tenant_name = name
    return [by_tenant[t] for t in sorted(by_tenant)]


async def unpriced_usage(
    conn: AsyncConnection, *, start: datetime, end: datetime, tenant_id: str | None = None
) -> list[dict[str, Any]]:
    """Models used without a price in ``[start, end)``, by family and reason: requests, tenants, tokens and
    quantities, most requests first (read through the partial index of unpriced events)."""
    statement = (
        select(
            E.model,
            E.category,
            E.unpriced,
            func.count().label("requests"),
            func.count(E.tenant_id.distinct()).label("tenants"),
            func.sum(E.input_tokens).label("input_tokens"),
            func.sum(E.output_tokens).label("output_tokens"),
            func.sum(E.quantity).label("quantity"),
            func.min(E.occurred_at).label("first_seen"),
            func.max(E.occurred_at).label("last_seen"),
        )
        .where(E.unpriced.is_not(None), E.occurred_at >= start, E.occurred_at < end)
        .group_by(E.model, E.category, E.unpriced)
        .order_by(func.count().desc(), E.model)
    )
    if tenant_id is not None:
        statement = statement.where(E.tenant_id == tenant_id)
    return [
        {
            "model": row.model,
            "category": row.category,
            "reason": row.unpriced,
            "requests": int(row.requests),
            "tenants": int(row.tenants),
            "input_tokens": int(row.input_tokens or 0),
            "output_tokens": int(row.output_tokens or 0),
            "quantity": int(row.quantity or 0),
            "quantity_unit": QUANTITY_UNITS.get(row.category),
            "first_seen": _iso(row.first_seen),
            "last_seen": _iso(row.last_seen),
        }
        for row in (await conn.execute(statement)).all()
    ]
