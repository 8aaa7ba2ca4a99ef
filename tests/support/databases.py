"""Fresh, migrated test databases without running the migrations for each test.

Each test process migrates one template per backend once (the same ``database.upgrade`` a test would run) and hands
each test a copy: SQLite gets a copy of the migrated file, PostgreSQL ``CREATE DATABASE ... TEMPLATE`` of the
migrated database. A copy is what the migrations would have produced (the migrations write no clock or random
value), and costs milliseconds instead of the ~0.5 s of CPU a migration takes. Tests whose subject is a migration
still migrate an empty database themselves (``new_postgres_database(..., migrated=False)``).

Copying a PostgreSQL database writes the whole copy (about 8 MB, nearly all of it the system catalogs) to the WAL,
and dropping it waits for every backend to acknowledge a barrier: 90 ms of the server's CPU for the pair, measured
here, and 1.7 GB of WAL for a run's ~250 databases. So a database a test is done with is emptied and handed to the
next test instead (``_recycle``, 10-30 ms): its connections are ended and it is renamed, so that whatever outlives
its test and connects again (a writer retrying a flush) finds no database, as after a drop, instead of writing into
the next test's. Then, when its schema and migration revision are still the template's (some tests alter a table or
stamp a revision on purpose), its non-empty tables are truncated and its sequences restarted; one whose schema
changed is dropped. Recycling and dropping run in one background thread per process; a test that finds no emptied
database waits for one being emptied, else takes a copy made ahead (``SPARES``). The session's end drops them all
(``close``).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg

from tenantgate import database

_lock = threading.Lock()
_sqlite_template: Path | None = None
_postgres_templates: dict[str, str] = {}
_dropper: ThreadPoolExecutor | None = None
_pending: list[Future[Any]] = []  # drops, and recycles that failed
_maker: ThreadPoolExecutor | None = None
_spares: dict[str, list[Future[str]]] = {}
_emptied: dict[str, list[str]] = {}
_emptying: dict[str, list[Future[str | None]]] = {}
_fingerprints: dict[str, str] = {}
SPARES = 2

# What a test could change about a database beyond its rows: every relation, column, default, constraint, index,
# trigger, routine, type and extension outside the system schemas. A database whose fingerprint is the template's
# differs from a fresh copy only in its rows and sequences.
_FINGERPRINT = """
SELECT md5(coalesce(string_agg(item, E'\\n' ORDER BY item), '')) FROM (
  SELECT format('rel %s.%s %s', n.nspname, c.relname, c.relkind) AS item
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_to%'
     AND n.nspname NOT LIKE 'pg\\_temp%'
  UNION ALL
  SELECT format('col %s %s %s %s %s %s', a.attrelid::regclass, a.attnum, a.attname,
                format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_to%'
     AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT format('con %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid)) FROM pg_constraint
   WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  UNION ALL
  SELECT format('idx %s', pg_get_indexdef(i.indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
   WHERE c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace,
                                'pg_toast'::regnamespace)
  UNION ALL
  SELECT format('trg %s %s', tgrelid::regclass, tgname) FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL
  SELECT format('fn %s', p.oid::regprocedure) FROM pg_proc p
   WHERE pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  UNION ALL
  SELECT format('typ %s', t.oid::regtype) FROM pg_type t
   WHERE typnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace)
     AND typtype IN ('e', 'c', 'd', 'r', 'm') AND (typtype <> 'c' OR typrelid = 0)
  UNION ALL
  SELECT format('ext %s %s', extname, extversion) FROM pg_extension
  UNION ALL
  SELECT format('ver %s', version_num) FROM alembic_version
) AS items
"""


def _admin(server: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(f"{server}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _fingerprint(server: str, name: str) -> str:
    async def run() -> str:
        conn = await asyncpg.connect(f"{server}/{name}")
        try:
            return str(await conn.fetchval(_FINGERPRINT))
        finally:
            await conn.close()

    return asyncio.run(run())


def _async_url(server: str, name: str) -> str:
    return f"{server}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)


def migrated_sqlite_url(path: Path) -> str:
    """A migrated SQLite database at ``path``: a copy of this process's template (or, when ``path`` exists, that
    database migrated as ``database.upgrade`` does)."""
    global _sqlite_template
    url = f"sqlite+aiosqlite:///{path}"
    if path.exists():
        database.upgrade(url)
        return url
    with _lock:
        if _sqlite_template is None:
            template = Path(tempfile.mkdtemp(prefix="tg-sqlite-template-")) / "template.db"
            database.upgrade(f"sqlite+aiosqlite:///{template}")
            # Everything in the main file, no -wal beside it: a copy of that one file is the whole database.
            conn = sqlite3.connect(template)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
            _sqlite_template = template
    shutil.copyfile(_sqlite_template, path)
    return url


def _postgres_template(server: str) -> str:
    with _lock:
        name = _postgres_templates.get(server)
        if name is None:
            name = f"tg_test_template_{uuid.uuid4().hex[:12]}"
            _admin(server, f'CREATE DATABASE "{name}"')
            # The migrations' engine is disposed when they end: nobody stays connected, which a TEMPLATE needs.
            database.upgrade(_async_url(server, name))
            _fingerprints[server] = _fingerprint(server, name)
            _postgres_templates[server] = name
        return name


def new_postgres_database(server: str, *, migrated: bool = True) -> tuple[str, Callable[[], None]]:
    """A new database on ``server`` (migrated to head unless ``migrated=False``): its SQLAlchemy URL and a function
    that drops it, or empties it for the next test (in the background; ``close`` waits)."""
    if not migrated:
        name = _new_name()
        _admin(server, f'CREATE DATABASE "{name}"')
        return _async_url(server, name), lambda: _drop_later(server, name)
    template = _postgres_template(server)
    name = _emptied_one(server) or _spare(server, template)
    return _async_url(server, name), lambda: _recycle_later(server, name)


def _new_name() -> str:
    return f"tg_test_{uuid.uuid4().hex[:12]}"


def _copy(server: str, template: str) -> str:
    name = _new_name()
    _admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def _spare(server: str, template: str) -> str:
    """A copy of ``template`` made ahead (or, for the first ones, now), with the next ones under way."""
    global _maker
    with _lock:
        if _maker is None:
            _maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tg-test-createdb")
        spares = _spares.setdefault(server, [])
        while len(spares) <= SPARES:
            spares.append(_maker.submit(_copy, server, template))
        made = spares.pop(0)
    return made.result()


def _background() -> ThreadPoolExecutor:
    global _dropper
    with _lock:
        if _dropper is None:
            _dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tg-test-dropdb")
        return _dropper


def _drop_later(server: str, name: str) -> None:
    future = _background().submit(_admin, server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    with _lock:
        _pending.append(future)


def _recycle_later(server: str, name: str) -> None:
    future = _background().submit(_recycle, server, name)
    with _lock:
        _emptying.setdefault(server, []).append(future)


def _emptied_one(server: str) -> str | None:
    """An emptied database: one ready, else the next one being emptied (tens of milliseconds), else none."""
    while True:
        with _lock:
            ready = _emptied.get(server)
            if ready:
                return ready.pop()
            emptying = _emptying.get(server)
            if not emptying:
                return None
            future = emptying.pop(0)
        try:
            name = future.result()
        except (OSError, asyncpg.PostgresError):  # dropping it failed: the session's end says so (``close``)
            with _lock:
                _pending.append(future)
            continue
        if name is not None:
            return name


def _recycle(server: str, name: str) -> str | None:
    """``name`` emptied as a fresh copy of the template is, under a new name, or dropped (and None) when that cannot
    be made sure.

    The new name is what makes it safe: whatever outlives its test and connects again (a writer retrying a flush,
    a pool refilling) finds no database by the old name, as it would after a drop, instead of writing into the next
    test's."""
    fresh = _new_name()

    async def rename() -> bool:
        admin = await asyncpg.connect(f"{server}/postgres")
        try:
            for _ in range(5):
                # What a test left connected (a killed server's backends, a pool not closed) keeps a database busy.
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    name,
                )
                try:
                    await admin.execute(f'ALTER DATABASE "{name}" RENAME TO "{fresh}"')
                    return True
                except asyncpg.ObjectInUseError:  # connected again meanwhile
                    await asyncio.sleep(0.05)
            return False
        finally:
            await admin.close()

    async def empty() -> bool:
        conn = await asyncpg.connect(f"{server}/{fresh}")
        try:
            if await conn.fetchval(_FINGERPRINT) != _fingerprints[server]:
                return False
            tables = [
                row[0]
                for row in await conn.fetch(
                    "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'alembic_version'"
                )
            ]
            used = " UNION ALL ".join(
                f"SELECT {i} FROM (SELECT FROM {table} LIMIT 1) AS t{i}" for i, table in enumerate(tables)
            )
            written = [tables[row[0]] for row in await conn.fetch(used)] if tables else []
            # Sequences advance even when what used them was rolled back: restart them all.
            sequences = await conn.fetch(
                "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences WHERE last_value IS NOT NULL"
            )
            async with conn.transaction():
                if written:
                    await conn.execute(f"TRUNCATE {', '.join(written)} RESTART IDENTITY CASCADE")
                for (sequence,) in sequences:
                    await conn.execute(f"ALTER SEQUENCE {sequence} RESTART")
            return True
        finally:
            await conn.close()

    try:
        if not asyncio.run(rename()):
            _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return None
        if asyncio.run(empty()):
            return fresh
    except (OSError, asyncpg.PostgresError):
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(server, f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')
    return None


def close() -> None:
    """Wait for the pending drops, then drop the templates (the end of a test session)."""
    global _sqlite_template
    with _lock:
        pending = list(_pending)
        _pending.clear()
        templates = dict(_postgres_templates)
        _postgres_templates.clear()
        spares = [(server, made) for server, futures in _spares.items() for made in futures]
        _spares.clear()
        emptying = [(server, future) for server, futures in _emptying.items() for future in futures]
        _emptying.clear()
        emptied = [(server, name) for server, names in _emptied.items() for name in names]
        _emptied.clear()
        sqlite_template, _sqlite_template = _sqlite_template, None
    for future in pending:
        future.result()
    for server, made in spares:
        _admin(server, f'DROP DATABASE IF EXISTS "{made.result()}" WITH (FORCE)')
    emptied += [(server, name) for server, future in emptying if (name := future.result()) is not None]
    for server, name in emptied:
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for server, name in templates.items():
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if sqlite_template is not None:
        shutil.rmtree(sqlite_template.parent, ignore_errors=True)
