"""Writing batches of priced usage events: insert-or-ignore on the event id, rollups for what was inserted.

One transaction per batch inserts the events and adds exactly the inserted ones to the minute, hour and day
rollups, so a replayed event changes nothing and rollups always equal their raw events.

Postgres: one statement (``unnest`` of column arrays -> ``INSERT .. ON CONFLICT (id) DO NOTHING RETURNING`` ->
aggregate -> rollup upsert), under a transaction-scoped advisory lock. The lock makes batches of all processes
commit one after another, which is what keeps the ``seq`` column (the export cursor) in commit order: a reader
that has seen ``seq`` n can never later see a smaller one appear. It also rules out deadlocks between rollup
upserts. SQLite has a single writer anyway; there the inserted rows come back from ``RETURNING`` and are
aggregated in Python.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Table, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantgate.tenants.metering.models import (
    ROLLUP_COUNTS,
    ROLLUP_SUMS,
    ROLLUP_WIDTHS,
    UsageEventRow,
    UsageRollupRow,
)
from tenantgate.tenants.metering.usage_event import COLUMN_NAMES as COLUMN_NAMES
from tenantgate.tenants.metering.usage_event import COLUMNS

EVENTS: Table = UsageEventRow.__table__  # type: ignore[assignment]
ROLLUPS: Table = UsageRollupRow.__table__  # type: ignore[assignment]

_COLUMNS = COLUMNS  # the stored columns, in the order the Postgres statement takes them, with their types
Row = tuple[Any, ...]
"""An event as it is written: its values in ``COLUMN_NAMES`` order. A batch of thousands is held in memory while
it is written; as tuples it takes about a quarter of what the events' dicts take."""


ROW_ID = COLUMN_NAMES.index("id")


_DEFAULTS: dict[str, Any] = {"batch": False}  # events spooled before batches were metered carry no ``batch``


def row_of(event: Mapping[str, Any]) -> Row:
    return tuple(event.get(name, _DEFAULTS.get(name)) for name in COLUMN_NAMES)


_ROLLUP_KEY = ("width", "tenant_id", "bucket_start", "api_key_id", "model", "category", "batch")
# Any constant works; it only has to be the same in every process writing to this database.
_WRITE_LOCK = 0x7467_6D65_7465_72  # "tgmeter"
# A database that takes longer than this to answer ``SELECT 1`` counts as down.
PING_TIMEOUT_SECONDS = 10.0


class EventStore(Protocol):
    async def write(self, rows: Sequence[Row]) -> int:
        """Store priced events (``row_of``); returns how many were new."""
        ...

    async def ping(self) -> bool:
        """Whether the database answers a trivial query now: tells an outage from a batch it refuses."""
        ...


async def _ping(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(PING_TIMEOUT_SECONDS), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


_BATCH_TABLE = "usage_event_batch"


def _batch_table_ddl() -> str:
    columns = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS)
    # Per connection, emptied at every commit: the landing place of one batch's COPY.
    return f"CREATE TEMP TABLE IF NOT EXISTS {_BATCH_TABLE} (ord int4, {columns}) ON COMMIT DELETE ROWS"


def _postgres_statement() -> str:
    names = ", ".join(COLUMN_NAMES)
    selected = ", ".join("to_timestamp(occurred_at)" if name == "occurred_at" else name for name in COLUMN_NAMES)
    sums = ",\n      ".join(f"sum(i.{name}) AS {name}" for name in ROLLUP_SUMS)
    rollup_columns = ", ".join(("width", "bucket_start", "tenant_id", "api_key_id", "model", "category", "batch"))
    value_columns = ", ".join((*ROLLUP_COUNTS, *ROLLUP_SUMS))
    updates = ",\n    ".join(
        f"{name} = usage_rollups.{name} + EXCLUDED.{name}" for name in (*ROLLUP_COUNTS, *ROLLUP_SUMS)
    )
    widths = ", ".join(f"({w})" for w in ROLLUP_WIDTHS)
    return f"""
WITH ins AS (
  INSERT INTO usage_events ({names})
  SELECT {selected} FROM {_BATCH_TABLE} ORDER BY ord
  ON CONFLICT (id) DO NOTHING
  RETURNING occurred_at, tenant_id, api_key_id, model, category, batch, billable, usage_source, unpriced,
    {", ".join(ROLLUP_SUMS)}
), agg AS (
  SELECT w.width, (floor(extract(epoch FROM i.occurred_at))::bigint / w.width) * w.width AS bucket_start,
      i.tenant_id, i.api_key_id, i.model, i.category, i.batch,
      count(*) AS requests, count(*) FILTER (WHERE i.usage_source = 'estimated') AS estimated_requests,
      count(*) FILTER (WHERE i.unpriced IS NOT NULL) AS unpriced_requests,
      {sums}
  FROM ins i CROSS JOIN (VALUES {widths}) AS w(width)
  WHERE i.billable
  GROUP BY 1, 2, 3, 4, 5, 6, 7
), up AS (
  INSERT INTO usage_rollups ({rollup_columns}, {value_columns})
  SELECT {rollup_columns}, {value_columns} FROM agg
  ON CONFLICT ({", ".join(_ROLLUP_KEY)}) DO UPDATE SET
    {updates}
)
SELECT count(*) FROM ins
"""


COPY_SLICE = 100


async def _records(rows: Sequence[Row]) -> AsyncIterator[Row]:
    """The batch's COPY rows, built and encoded a slice at a time: a 5,000-event batch in one go held the event loop
    for tens of milliseconds (every request in flight waited), in slices of 100 rows for about 0.4 ms at a time."""
    for index, row in enumerate(rows):
        if index and index % COPY_SLICE == 0:
            await asyncio.sleep(0)
        yield (index, *row)


class PostgresEventStore:
    """COPY (binary) of the batch into a temporary table, then the one insert-and-rollup statement.

    COPY moves a 5,000-event batch in a few tens of milliseconds; binding the same batch as 32 column arrays
    costs several times more in parameter encoding alone.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._statement = _postgres_statement()
        self._ddl = _batch_table_ddl()

    async def write(self, rows: Sequence[Row]) -> int:
        if not rows:
            return 0
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK})
            driver: Any = (await conn.get_raw_connection()).driver_connection
            await driver.execute(self._ddl)
            await driver.copy_records_to_table(_BATCH_TABLE, records=_records(rows), columns=["ord", *COLUMN_NAMES])
            inserted = await driver.fetchval(self._statement)
        return int(inserted)

    async def ping(self) -> bool:
        return await _ping(self.engine)


class SQLiteEventStore:
    # 38 columns x 500 rows stays under SQLite's 32,766 bound parameters per statement.
    chunk = 500

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def write(self, rows: Sequence[Row]) -> int:
        if not rows:
            return 0
        returning = [
            EVENTS.c[name] for name in ("occurred_at", "tenant_id", "api_key_id", "model", "category", "batch")
        ]
        returning += [EVENTS.c.billable, EVENTS.c.usage_source, EVENTS.c.unpriced]
        returning += [EVENTS.c[name] for name in ROLLUP_SUMS]
        inserted: list[Any] = []
        async with self.engine.begin() as conn:
            for start in range(0, len(rows), self.chunk):
                values = [_sqlite_values(row) for row in rows[start : start + self.chunk]]
                statement = sqlite_insert(EVENTS).values(values).on_conflict_do_nothing(index_elements=["id"])
                inserted.extend((await conn.execute(statement.returning(*returning))).all())
            deltas = rollup_deltas(dict(row._mapping) for row in inserted)
            if deltas:
                upsert = sqlite_insert(ROLLUPS)
                sums = (*ROLLUP_COUNTS, *ROLLUP_SUMS)
                upsert = upsert.on_conflict_do_update(
                    index_elements=list(_ROLLUP_KEY),
                    set_={name: ROLLUPS.c[name] + upsert.excluded[name] for name in sums},
                )
                await conn.execute(upsert, deltas)
        return len(inserted)

    async def ping(self) -> bool:
        return await _ping(self.engine)


def _sqlite_values(row: Row) -> dict[str, Any]:
    values = dict(zip(COLUMN_NAMES, row, strict=True))
    values["occurred_at"] = datetime.fromtimestamp(values["occurred_at"], UTC)
    return values


def rollup_deltas(rows: Any) -> list[dict[str, Any]]:
    """Per-bucket sums of inserted events (``occurred_at``, dimensions and sums) for every rollup width."""
    totals: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        if not row["billable"]:
            continue
        moment = row["occurred_at"]
        seconds = int(moment.timestamp()) if isinstance(moment, datetime) else int(moment)
        for width in ROLLUP_WIDTHS:
            bucket = seconds // width * width
            key = (
                width,
                row["tenant_id"],
                bucket,
                row["api_key_id"],
                row["model"],
                row["category"],
                bool(row["batch"]),
            )
            entry = totals.get(key)
            if entry is None:
                entry = dict(zip(_ROLLUP_KEY, key, strict=True))
                entry.update(dict.fromkeys((*ROLLUP_COUNTS, *ROLLUP_SUMS), 0))
                totals[key] = entry
            entry["requests"] += 1
            entry["estimated_requests"] += row["usage_source"] == "estimated"
            entry["unpriced_requests"] += row["unpriced"] is not None
            for name in ROLLUP_SUMS:
                entry[name] += row[name]
    return list(totals.values())


def store_for(engine: AsyncEngine) -> EventStore:
    if engine.dialect.name == "sqlite":
        return SQLiteEventStore(engine)
    return PostgresEventStore(engine)
