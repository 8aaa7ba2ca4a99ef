"""Usage totals from the rollups: cost proportional to the number of buckets asked for, never to events.

Any time range made of whole minutes is tiled with the coarsest rollups that fit inside it: whole UTC days from
the day rollups, the hours at either edge from the hour rollups, the minutes at the edges from the minute rollups.
So ranges need not be aligned to days (``start_time = now - 86400`` works) and the answer is still exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tenantgate.tenants.metering.models import COST_PARTS, ROLLUP_COUNTS, ROLLUP_SUMS, UsageRollupRow

MINUTE, HOUR, DAY = 60, 3600, 86400
_WIDTHS = (DAY, HOUR, MINUTE)
VALUE_FIELDS = (*ROLLUP_COUNTS, *ROLLUP_SUMS)
DIMENSIONS = ("tenant_id", "api_key_id", "model", "category", "batch")

R = UsageRollupRow


def floor_minute(seconds: int) -> int:
    return seconds // MINUTE * MINUTE


def ceil_minute(seconds: int) -> int:
    return -(-seconds // MINUTE) * MINUTE


def tiles(lo: int, hi: int) -> list[tuple[int, int, int]]:
    """``(width, start, end)`` ranges of rollup buckets that exactly cover ``[lo, hi)`` (whole minutes)."""
    assert lo % MINUTE == 0 and hi % MINUTE == 0, "ranges are whole minutes"
    out: list[tuple[int, int, int]] = []

    def cover(lo: int, hi: int, widths: Sequence[int]) -> None:
        if lo >= hi:
            return
        width, finer = widths[0], widths[1:]
        first, last = -(-lo // width) * width, hi // width * width
        if first < last:
            out.append((width, first, last))
            cover(lo, first, finer)
            cover(last, hi, finer)
        else:
            cover(lo, hi, finer)

    cover(lo, hi, _WIDTHS)
    return out


def _merged(ranges: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    merged: list[tuple[int, int, int]] = []
    for width, start, end in sorted(ranges):
        if merged and merged[-1][0] == width and merged[-1][2] == start:
            merged[-1] = (width, merged[-1][1], end)
        else:
            merged.append((width, start, end))
    return merged


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Totals per bucket ``[start + k*width, start + (k+1)*width)`` (the last one ends at ``end``)."""

    start: int
    end: int
    width: int
    group_by: tuple[str, ...] = ()
    api_key_ids: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None
    project_ids: tuple[str, ...] | None = None
    batch: bool | None = None
    """Only batch work (True), only the rest (False), or both (None)."""


@dataclass(slots=True)
class Totals:
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VALUE_FIELDS, 0))

    def __getitem__(self, name: str) -> int:
        return self.values[name]

    def add(self, other: Totals) -> None:
        for name, value in other.values.items():
            self.values[name] += value

    @property
    def cost_nusd(self) -> int:
        """The cost of the priced requests (unpriced ones have none, and are counted in ``unpriced_requests``)."""
        return sum(self.values[name] for name in COST_PARTS)

    @property
    def all_unpriced(self) -> bool:
        """Every request is unpriced: there is no cost to show, not a cost of 0."""
        return self["requests"] > 0 and self["unpriced_requests"] == self["requests"]


GroupKey = tuple[str | None, ...]
Buckets = dict[int, dict[GroupKey, Totals]]


def _ranges(query: UsageQuery) -> list[tuple[int, int, int]]:
    ranges = []
    bucket = query.start
    while bucket < query.end:
        ranges.extend(tiles(bucket, min(bucket + query.width, query.end)))
        bucket += query.width
    return _merged(ranges)


def _in(column: Any, values: tuple[str, ...] | None) -> ColumnElement[bool] | None:
    return None if values is None else column.in_(values)


def statement(query: UsageQuery, *, tenant_id: str | None) -> Select[Any]:
    """The SQL of ``aggregate``: one grouped sum over the rollup rows that tile the query's buckets."""
    for name in query.group_by:
        assert name in DIMENSIONS, name
    ranges = _ranges(query)
    index = ((R.bucket_start - query.start) // query.width).label("bucket_index")
    dimensions = [getattr(R, name) for name in query.group_by]
    sums = [func.sum(getattr(R, name)).label(name) for name in VALUE_FIELDS]
    conditions = [
        or_(*(and_(R.width == w, R.bucket_start >= a, R.bucket_start < b) for w, a, b in ranges)),
        _in(R.tenant_id, query.project_ids),
        _in(R.api_key_id, query.api_key_ids),
        _in(R.model, query.models),
        _in(R.category, query.categories),
        None if query.batch is None else R.batch.is_(query.batch),
        None if tenant_id is None else R.tenant_id == tenant_id,
    ]
    return (
        select(index, *dimensions, *sums).where(*(c for c in conditions if c is not None)).group_by(index, *dimensions)
    )


async def aggregate(conn: AsyncConnection, query: UsageQuery, *, tenant_id: str | None) -> Buckets:
    """Totals by bucket index and group. ``tenant_id`` scopes the query to one tenant (None: all tenants, for
    platform operators only); it is a required argument so no caller can forget to decide."""
    if query.start >= query.end:
        return {}
    if conn.dialect.name == "postgresql":
        # Enough memory to hash-aggregate tens of thousands of rollup rows instead of sorting them on disk.
        await conn.execute(text("SET LOCAL work_mem = '64MB'"))
    buckets: Buckets = {}
    for row in (await conn.execute(statement(query, tenant_id=tenant_id))).all():
        values = row._mapping
        key = tuple(values[name] for name in query.group_by)
        totals = Totals({name: int(values[name] or 0) for name in VALUE_FIELDS})
        buckets.setdefault(int(values["bucket_index"]), {})[key] = totals
    return buckets
