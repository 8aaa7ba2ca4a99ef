"""Usage events the database refuses: told apart from an outage, set aside with their bytes, replayable later.

A batch is one transaction, so one event the database refuses (a cost beyond ``bigint``, a timestamp out of
range, a constraint or trigger an operator added) fails its whole batch, on every retry: no usage would be stored
for anyone again while the spool grows.

When a batch fails, ``write_isolating`` first decides whether the database is available: the error must be one
that can be about the data, and the database must answer ``SELECT 1`` (``EventStore.ping``). Connection,
authentication, missing database or schema, permission, lock, resource, shutdown and timeout errors are never
about one event; without that rule a writer that does not match the schema (a migration not yet applied) would
set aside every event it reads. If the database is unavailable the error propagates: the writer backs off and
retries and nothing advances. Otherwise the batch is bisected: each half is written on its own (insert-or-ignore
on the event id makes rewriting harmless) and a failing half is split again after the same check, so an outage
in the middle of it still only propagates. An event that fails alone twice while the database answers is refused.

The writer appends a refused event's original spool line, with the error's type and SQLSTATE and the time, to
``rejected-events.jsonl`` in the spool directory, before its checkpoint moves past the line. Why a file of its own
rather than the ``<segment>.rejected`` quarantine of unreadable lines: those bytes never parsed and only a human
can make sense of them, while these are valid events that ``tenantgate usage replay-rejected`` can store once the
cause is fixed; each record carries its error beside the line; and one file per spool directory (appended under
``flock`` by every worker) is one place to look and to replay, however often segments rotate.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
from sqlalchemy import exc as sa_exc

from tenantgate.ids import new_id
from tenantgate.tenants.metering.spool import fsync_directory
from tenantgate.tenants.metering.store import EventStore, Row

FILE_NAME = "rejected-events.jsonl"
_CLAIMED = FILE_NAME + ".replaying-"

# SQLSTATE classes that describe the server, the session or the schema, never one row: connection (08),
# read-only transaction during a failover (25), authorization (28), no such database or schema (3D, 3F),
# serialization failure or deadlock (40), undefined table or column and permission denied (42), disk full or out
# of memory (53), lock not available (55), shutdown and statement timeout (57), I/O error (58), internal (XX).
_UNAVAILABLE_CLASSES = frozenset({"08", "25", "28", "3D", "3F", "40", "42", "53", "55", "57", "58", "XX"})
_UNAVAILABLE_TYPES: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, timed out
    MemoryError,
    sqlite3.OperationalError,  # locked, no such table or column, disk I/O error, read-only database
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # no connection from the pool in time
    asyncpg.InterfaceError,  # connection closed, another operation in progress
    asyncpg.InternalClientError,
)


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        original = getattr(current, "orig", None)  # SQLAlchemy's wrapper of a driver error
        current = original if isinstance(original, BaseException) else current.__cause__


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a Postgres error (or of the error it wraps), if there is one."""
    for cause in _causes(error):
        state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(state, str) and len(state) == 5:
            return state
    return None


def unavailable_error(error: BaseException) -> bool:
    """Whether ``error`` says the database (or its schema) is unavailable, rather than refusing some data."""
    state = sqlstate(error)
    if state is not None:
        return state[:2] in _UNAVAILABLE_CLASSES
    causes = list(_causes(error))
    # A value that cannot be encoded (asyncpg's client-side DataError is an InterfaceError and a ValueError).
    if any(isinstance(cause, (ValueError, TypeError, ArithmeticError)) for cause in causes):
        return False
    return any(
        isinstance(cause, _UNAVAILABLE_TYPES) or getattr(cause, "connection_invalidated", False) for cause in causes
    )


async def _unavailable(store: EventStore, error: BaseException) -> bool:
    return unavailable_error(error) or not await store.ping()


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int
    """Position of the refused event in the batch."""
    error: BaseException


async def write_isolating(store: EventStore, events: Sequence[Row]) -> tuple[int, list[Refusal]]:
    """Write ``events`` (rows: ``store.row_of``); if the database refuses the batch while it is available, write
    every event but those it refuses. Returns how many were inserted and the refused events, in batch order. Raises
    the write's error when the database is unavailable, at any step: nothing is refused then."""
    try:
        return await store.write(events), []
    except Exception as error:
        if await _unavailable(store, error):
            raise
    refused: list[Refusal] = []
    inserted = await _bisect(store, events, 0, len(events), refused)
    return inserted, refused


async def _bisect(store: EventStore, events: Sequence[Row], lo: int, hi: int, refused: list[Refusal]) -> int:
    """Write ``events[lo:hi]``, which just failed together, around the events the database refuses."""
    if hi - lo == 1:
        try:
            return await store.write(events[lo:hi])  # its second try alone: a hiccup is not a refusal
        except Exception as error:
            if await _unavailable(store, error):
                raise
            refused.append(Refusal(lo, error))
            return 0
    middle = (lo + hi) // 2
    inserted = 0
    for start, end in ((lo, middle), (middle, hi)):
        try:
            inserted += await store.write(events[start:end])
        except Exception as error:
            if await _unavailable(store, error):
                raise
            inserted += await _bisect(store, events, start, end, refused)
    return inserted


def encode_record(event_id: object, line: bytes, error: BaseException) -> bytes:
    """One dead-letter record: the spool line as it was, and why and when it was refused (never the error's
    message: a driver's message can quote the parameters of a whole batch)."""
    record = {
        "id": str(event_id),
        "rejected_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "error": type(error).__name__,
        "sqlstate": sqlstate(error),
        "line": line.decode(),  # parsed as JSON before, so valid UTF-8
    }
    return orjson.dumps(record) + b"\n"


class DeadLetters:
    """The dead-letter file of one spool directory, shared by every worker writing to it and by the replay."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME

    def append(self, data: bytes) -> None:
        """Append whole records durably. Safe against other workers (``flock``) and against a replay that moved
        the file aside between our open and our lock (then the records go to the new file)."""
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if _is_file_at(fd, self.path):
                    _append_all(fd, data)
                    os.fsync(fd)
                    break
            finally:
                os.close(fd)
        fsync_directory(self.directory)

    @contextlib.contextmanager
    def replay_lock(self) -> Iterator[None]:
        """One replay at a time per spool directory; raises BlockingIOError if another one is running."""
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield
        finally:
            os.close(fd)

    def claim(self) -> list[Path]:
        """Move the file aside for a replay (records refused from now on start a new one). Returns the claimed
        files, oldest first, including any left by a replay that was interrupted."""
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.path, self.directory / f"{_CLAIMED}{new_id('r')[2:]}")
        return sorted(self.directory.glob(_CLAIMED + "*"))

    @staticmethod
    def read(paths: Sequence[Path]) -> list[bytes]:
        """The records of claimed files, each read under its lock (so after any append still in progress)."""
        records: list[bytes] = []
        for path in paths:
            with path.open("rb") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                records.extend(line for line in handle.read().split(b"\n") if line.strip())
        return records

    def release(self, paths: Sequence[Path]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _is_file_at(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _append_all(fd: int, data: bytes) -> None:
    start = os.fstat(fd).st_size
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        with contextlib.suppress(OSError):  # no half record for the next one to be glued to
            os.ftruncate(fd, start)
        raise
