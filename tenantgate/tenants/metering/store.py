"""Writing batches of priced usage events: insert-or-ignore on the event id, rollups for what was inserted.

One transaction per batch inserts the events and adds exactly the inserted ones to the minute, hour and day
rollups, so a replayed event changes nothing and rollups always equal their raw events.

Postgres: one statement (``unnest`` of column arrays -> ``INSERT .. ON CONFLICT (id) DO NOTHING RETURNING`` ->
aggregate -> rollup upsert), under a transaction-scoped advisory lock. The lock makes batches of all processes
commit one after another, which is what keeps the ``seq`` column (the export cursor) in commit order: a reader
that has seen ``seq`` n can never later see a smaller one appear. It also rules out deadlocks between rollup
upserts. SQLite has a single writer anyway; there a thread of the store's own writes each batch on its own connection
(``SQLiteEventStore``), with the same insert-or-ignore and the rollups summed in SQL from the rows inserted.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Table, text
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


# Events spooled before batches (or hosted tools) were metered carry no ``batch`` (nor tool counts).
_DEFAULTS: dict[str, Any] = {
    "batch": False,
    "web_search_calls": 0,
    "file_search_calls": 0,
    "code_interpreter_sessions": 0,
}


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

    async def open(self) -> None:
        """Raise if this store cannot write to the engine's database (a configuration error), before serving."""
        ...

    async def close(self) -> None:
        """Release what the store holds of its own (not the engine it was given)."""
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
      count(*) FILTER (WHERE i.web_search_calls > 0) AS web_search_requests,
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

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None


class SQLiteEventStore:
    """Writes on a thread of its own, with its own ``sqlite3`` connection: the event loop only hands a batch over.

    Through the async engine, a batch's statements were built and bound with the event loop's time (SQLAlchemy
    compiling 500-row ``VALUES`` statements and processing every bind value, then aggregating the rollups in
    Python), and every request in flight waited for it: 6,000 events held the loop for seconds. Here the loop awaits
    a future. The thread does as little in Python as it can, because Python on any thread holds the GIL the loop
    needs: ``executemany`` binds the rows in C, SQLite itself skips the ids already stored and sums the new events
    into the rollups (one ``INSERT .. SELECT .. GROUP BY``), and ``sqlite3`` releases the GIL while SQLite works.

    One transaction per batch, ``BEGIN IMMEDIATE`` (the write lock first): the events inserted are exactly those
    with a ``seq`` above the largest before the insert, and only they reach the rollups, so a replayed batch changes
    nothing. The writer's checkpoint waits for this commit. SQLite's errors come as they are
    (``sqlite3.OperationalError`` for a locked or missing database, ``IntegrityError`` for a row it refuses), which
    is what the dead-letter isolation tells apart.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        url = engine.url
        self.path = url.database or ":memory:"
        self._uri = str(url.query.get("uri", "")).lower() in {"1", "true"}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tenantgate-sqlite-writer")
        self._connection: sqlite3.Connection | None = None
        """Opened and used on the executor's one thread only."""
        self._insert = _sqlite_insert()
        self._rollup = _sqlite_rollup()

    async def open(self) -> None:
        if self.path == ":memory:" or "mode=memory" in self.path:
            # The thread's connection would open a database of its own, and usage would never reach the engine's.
            raise ValueError(
                "metering needs TENANTGATE_DATABASE_URL to name a SQLite file: an in-memory database is one per "
                "connection, and usage is written on a connection of its own"
            )

    async def write(self, rows: Sequence[Row]) -> int:
        if not rows:
            return 0
        # If the awaiting task is cancelled (a shutdown deadline), the thread still commits or rolls back; the
        # checkpoint has not moved then, and a replay of a committed batch inserts nothing.
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._write, rows)

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                await asyncio.get_running_loop().run_in_executor(self._executor, self._ping)
        except Exception:
            return False
        return True

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)

    # --- on the writer thread -------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, uri=self._uri)
            # As the engine's connections (database.py): WAL, so readers never wait for this writer.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            self._connection = connection
        return self._connection

    def _write(self, rows: Sequence[Row]) -> int:
        connection = self._connect()
        connection.execute("BEGIN IMMEDIATE")
        try:
            (before,) = connection.execute("SELECT coalesce(max(seq), 0) FROM usage_events").fetchone()
            changes = connection.total_changes
            connection.executemany(self._insert, map(_sqlite_row, rows))
            inserted = connection.total_changes - changes
            if inserted:
                connection.execute(self._rollup, (before,))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return inserted

    def _ping(self) -> None:
        self._connect().execute("SELECT 1").fetchall()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


_OCCURRED_AT = COLUMN_NAMES.index("occurred_at")
# How SQLAlchemy's SQLite dialect stores a datetime (DATETIME's storage format), so reads see what they always did.
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


def _sqlite_row(row: Row) -> Row:
    """A row as ``sqlite3`` binds it: the time as SQLAlchemy stores it on SQLite (booleans bind as 0/1 already)."""
    at = datetime.fromtimestamp(row[_OCCURRED_AT], UTC).strftime(_SQLITE_DATETIME)
    return (*row[:_OCCURRED_AT], at, *row[_OCCURRED_AT + 1 :])


def _sqlite_insert() -> str:
    names, marks = ", ".join(COLUMN_NAMES), ", ".join("?" * len(COLUMN_NAMES))
    return f"INSERT INTO usage_events ({names}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING"


def _sqlite_rollup() -> str:
    """The rollup upsert of the events inserted after ``seq`` ? (the Postgres statement's ``agg`` and ``up``)."""
    widths = " UNION ALL ".join(f"SELECT {width} AS width" for width in ROLLUP_WIDTHS)
    sums = ", ".join(f"sum(e.{name})" for name in ROLLUP_SUMS)
    values = ", ".join((*ROLLUP_COUNTS, *ROLLUP_SUMS))
    updates = ", ".join(f"{name} = usage_rollups.{name} + excluded.{name}" for name in (*ROLLUP_COUNTS, *ROLLUP_SUMS))
    return f"""
INSERT INTO usage_rollups (width, bucket_start, tenant_id, api_key_id, model, category, batch, {values})
SELECT w.width, CAST(strftime('%s', e.occurred_at) AS INTEGER) / w.width * w.width,
    e.tenant_id, e.api_key_id, e.model, e.category, e.batch,
    count(*), count(*) FILTER (WHERE e.usage_source = 'estimated'), count(*) FILTER (WHERE e.unpriced IS NOT NULL),
    count(*) FILTER (WHERE e.web_search_calls > 0), {sums}
FROM usage_events e CROSS JOIN ({widths}) w
WHERE e.seq > ? AND e.billable
GROUP BY 1, 2, 3, 4, 5, 6, 7
ON CONFLICT ({", ".join(_ROLLUP_KEY)}) DO UPDATE SET {updates}
"""


def store_for(engine: AsyncEngine) -> EventStore:
    if engine.dialect.name == "sqlite":
        return SQLiteEventStore(engine)
    return PostgresEventStore(engine)
