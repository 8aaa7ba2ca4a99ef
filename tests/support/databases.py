"""Fresh, migrated test databases without running the migrations for each test.

Each test process migrates one template per backend once (the same ``database.upgrade`` a test would run) and hands
each test a copy: SQLite gets a copy of the migrated file, PostgreSQL ``CREATE DATABASE ... TEMPLATE`` of the
migrated database. A copy is what the migrations would have produced (the migrations write no clock or random
value), and costs milliseconds instead of the ~0.5 s of CPU a migration takes. Tests whose subject is a migration
still migrate an empty database themselves (``new_postgres_database(..., migrated=False)``).

Copying a PostgreSQL database writes the whole copy (about 8 MB, nearly all of it the system catalogs) to the WAL:
70-300 ms, by how busy the disk is. So each process keeps ``SPARES`` copies made ahead in a background thread, and a
test takes one that is ready. Dropping a database waits for every backend to acknowledge a barrier (0.1-2 s on a busy
machine), and nothing waits for the result: drops run in one background thread per process too. The session's end
waits for both and drops the spares (``close``).
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

import asyncpg

from tenantgate import database

_lock = threading.Lock()
_sqlite_template: Path | None = None
_postgres_templates: dict[str, str] = {}
_dropper: ThreadPoolExecutor | None = None
_pending: list[Future[None]] = []
_maker: ThreadPoolExecutor | None = None
_spares: dict[str, list[Future[str]]] = {}
SPARES = 2


def _admin(server: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(f"{server}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


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
            _postgres_templates[server] = name
        return name


def new_postgres_database(server: str, *, migrated: bool = True) -> tuple[str, Callable[[], None]]:
    """A new database on ``server`` (migrated to head unless ``migrated=False``): its SQLAlchemy URL and a function
    that drops it (in the background; ``close`` waits)."""
    if migrated:
        name = _spare(server, _postgres_template(server))
    else:
        name = _new_name()
        _admin(server, f'CREATE DATABASE "{name}"')
    return _async_url(server, name), lambda: _drop_later(server, name)


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


def _drop_later(server: str, name: str) -> None:
    global _dropper
    with _lock:
        if _dropper is None:
            _dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tg-test-dropdb")
        _pending.append(_dropper.submit(_admin, server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
        sqlite_template, _sqlite_template = _sqlite_template, None
    for future in pending:
        future.result()
    for server, made in spares:
        _admin(server, f'DROP DATABASE IF EXISTS "{made.result()}" WITH (FORCE)')
    for server, name in templates.items():
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if sqlite_template is not None:
        shutil.rmtree(sqlite_template.parent, ignore_errors=True)
