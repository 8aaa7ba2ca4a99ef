"""The suite's PostgreSQL databases (tests/support/databases.py): one a test is done with comes back to the next test
as a fresh copy of the migrated template would be, or not at all."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import asyncpg
import pytest

from tests.support import databases


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _query(server: str, name: str, *statements: str) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(f"{server}/{name}")
        try:
            return [await conn.fetch(statement) for statement in statements]
        finally:
            await conn.close()

    return asyncio.run(run())


def _exists(server: str, name: str) -> bool:
    [rows] = _query(server, "postgres", f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
    return bool(rows)


def _oid(server: str, name: str) -> int:
    [rows] = _query(server, "postgres", f"SELECT oid FROM pg_database WHERE datname = '{name}'")
    return int(rows[0][0])


def _rows_in_every_table(server: str, name: str) -> dict[str, int]:
    [tables] = _query(
        server, name, "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
    )
    counts = _query(server, name, *(f'SELECT count(*) FROM "{table}"' for (table,) in tables))
    return {table: rows[0][0] for (table,), rows in zip(tables, counts, strict=True)}


def test_a_database_a_test_wrote_to_is_handed_on_as_a_fresh_copy(postgres_server: str) -> None:
    url, done = databases.new_postgres_database(postgres_server)
    fresh = _rows_in_every_table(postgres_server, _name(url))
    oid = _oid(postgres_server, _name(url))
    _query(
        postgres_server,
        _name(url),
        "INSERT INTO invalidation_log (scope, target_id, created_at) VALUES ('key', 'k1', now()), ('key', 'k2', now())",
        "INSERT INTO leases VALUES ('object-poller', 'me', now())",
        "SELECT nextval('usage_events_seq_seq')",  # used by nothing kept, as a rolled-back insert leaves it
    )
    # A connection the test left open, as a killed server's would be: on its own loop, since it outlives a call.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    held = asyncio.run_coroutine_threadsafe(asyncpg.connect(f"{postgres_server}/{_name(url)}"), loop).result()
    try:
        done()
        again, done_again = databases.new_postgres_database(postgres_server)
    finally:
        asyncio.run_coroutine_threadsafe(_closed(held), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
    try:
        assert _oid(postgres_server, _name(again)) == oid  # the same database, emptied, not a new copy
        # Under a new name: what outlives a test and connects again (a writer retrying) finds nothing, as after a drop.
        assert _name(again) != _name(url) and not _exists(postgres_server, _name(url))
        assert _rows_in_every_table(postgres_server, _name(again)) == fresh
        assert fresh["alembic_version"] == 1 and sum(fresh.values()) == 1
        [ids, seq] = _query(
            postgres_server,
            _name(again),
            "INSERT INTO invalidation_log (scope, target_id, created_at) VALUES ('key', 'k3', now()) RETURNING id",
            "SELECT nextval('usage_events_seq_seq')",
        )
        assert (ids[0][0], seq[0][0]) == (1, 1)  # sequences start over, as in a fresh copy
    finally:
        done_again()


async def _closed(conn: asyncpg.Connection) -> None:
    with contextlib.suppress(OSError, asyncpg.PostgresError):  # ended by the recycling, as it should be
        await conn.close(timeout=1)


@pytest.mark.parametrize(
    "changes",
    [
        # what tests/tenants/metering/test_dead_letter.py does: the column comes back, in another place
        ("ALTER TABLE usage_events DROP COLUMN attempts", "ALTER TABLE usage_events ADD COLUMN attempts INTEGER"),
        ("UPDATE alembic_version SET version_num = 'elsewhere'",),
        ("CREATE TABLE scratch (x integer)",),
    ],
    ids=["column moved", "another revision", "a table more"],
)
def test_a_database_whose_schema_a_test_changed_is_dropped_not_handed_on(
    postgres_server: str, changes: tuple[str, ...]
) -> None:
    url, done = databases.new_postgres_database(postgres_server)
    oid = _oid(postgres_server, _name(url))
    _query(postgres_server, _name(url), *changes)
    done()
    other, done_other = databases.new_postgres_database(postgres_server)
    try:
        assert _oid(postgres_server, _name(other)) != oid
        [rows] = _query(postgres_server, "postgres", f"SELECT datname FROM pg_database WHERE oid = {oid}")
        assert rows == []  # dropped, under whichever name
    finally:
        done_other()
