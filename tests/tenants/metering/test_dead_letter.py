"""Events the database refuses: set aside so everyone else's usage is stored, never confused with an outage, and
kept for a replay. On SQLite and Postgres."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantgate import database
from tenantgate.database import create_engine
from tenantgate.tenants.metering.deadletter import FILE_NAME
from tenantgate.tenants.metering.events import encode
from tenantgate.tenants.metering.pricing import PriceBook
from tenantgate.tenants.metering.spool import Spool
from tenantgate.tenants.metering.store import EventStore, store_for
from tenantgate.tenants.metering.writer import MeterWriter
from tests.support.metering import make_event
from tests.support.pg_instance import PostgresInstance

# Values the database refuses that pass the hook's own guards: output tokens below its 2**62 cap whose cost in
# nano-USD (600 per gpt-4o-mini output token) is beyond bigint; a time beyond any timestamp type (year 31 million).
POISONS = {"cost beyond bigint": {"output_tokens": 2**61}, "time out of range": {"occurred_at": 1e15}}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def own_postgres() -> Iterator[PostgresInstance]:
    instance = PostgresInstance()
    try:
        yield instance
    finally:
        instance.destroy()


def _writer(store: EventStore, directory: Path, batch_size: int = 25) -> MeterWriter:
    spool = Spool(directory)
    spool.open()
    return MeterWriter(spool, store, PriceBook.load(), interval=60, batch_size=batch_size)


def _spool(writer: MeterWriter, events: Sequence[dict[str, Any]]) -> None:
    for event in events:
        writer.spool.append(encode(event))


def _dead_letters(directory: Path) -> list[dict[str, Any]]:
    path = directory / FILE_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _committed_everything(writer: MeterWriter) -> bool:
    return all(segment.committed == segment.size for segment in writer.spool.segments())


async def _rows(engine: AsyncEngine, sql: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(row) for row in (await conn.execute(text(sql))).all()]


async def _stored_ids(engine: AsyncEngine) -> list[str]:
    return [row[0] for row in await _rows(engine, "SELECT id FROM usage_events ORDER BY seq")]


async def _rollups(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    return await _rows(
        engine,
        "SELECT width, sum(requests), sum(input_tokens), sum(output_tokens), sum(cost_output_nusd) "
        "FROM usage_rollups GROUP BY width ORDER BY width",
    )


def _totals(events: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rollups ``events`` (gpt-4o-mini, billable) add up to, per width."""
    inputs = sum(e["input_tokens"] for e in events)
    outputs = sum(e["output_tokens"] for e in events)
    return [(width, len(events), inputs, outputs, outputs * 600) for width in (60, 3600, 86400)]


@pytest.mark.parametrize("poison", list(POISONS))
async def test_refused_events_are_set_aside_and_everything_else_is_stored_once(
    engine: AsyncEngine, tmp_path: Path, poison: str, caplog: pytest.LogCaptureFixture
) -> None:
    writer = _writer(store_for(engine), tmp_path)
    good = [make_event(input_tokens=i + 1) for i in range(60)]
    bad = [make_event(**POISONS[poison]) for _ in range(3)]
    # Batches of 25: the first holds two bad events (its first and last line), the third ends with one.
    spooled = [bad[0], *good[:23], bad[1], *good[23:], bad[2]]
    _spool(writer, spooled)

    with caplog.at_level(logging.ERROR, logger="tenantgate.metering"):
        assert await writer.flush() == 60

    assert await _stored_ids(engine) == [e["id"] for e in good]  # once each, in spool order
    assert await _rollups(engine) == _totals(good)
    records = _dead_letters(tmp_path)
    assert [r["id"] for r in records] == [e["id"] for e in bad]
    assert [r["line"].encode() + b"\n" for r in records] == [encode(e) for e in bad]  # the spooled bytes
    postgres = engine.dialect.name == "postgresql"
    expected = ("DatetimeFieldOverflowError", "22008") if postgres and poison == "time out of range" else None
    assert all(r["error"] and r["rejected_at"].endswith("Z") for r in records)
    if expected:
        assert {(r["error"], r["sqlstate"]) for r in records} == {expected}
    assert writer.rejected == 3
    assert _committed_everything(writer)

    refusals = [r for r in caplog.records if "refused usage event" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.ERROR] * 3
    assert all(e["id"] in r.getMessage() for e, r in zip(bad, refusals, strict=True))
    logged = caplog.text
    assert str(2**61) not in logged and "1e+15" not in logged and "out of" not in logged  # no parameters

    later = [make_event(input_tokens=1000) for _ in range(5)]
    _spool(writer, later)
    assert await writer.flush() == 5
    assert await _stored_ids(engine) == [e["id"] for e in [*good, *later]]
    assert len(_dead_letters(tmp_path)) == 3
    await writer.close(5)


class _FailsEachBatchOnce:
    """The real store, except that a batch fails with a data-like error the first time it is written."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.seen: set[tuple[str, ...]] = set()

    async def write(self, events: Sequence[dict[str, Any]]) -> int:
        ids = tuple(e["id"] for e in events)
        if ids not in self.seen:
            self.seen.add(ids)
            raise ValueError("a hiccup")
        return await self.store.write(events)

    async def ping(self) -> bool:
        return await self.store.ping()


async def test_an_event_that_fails_once_alone_is_tried_again_not_set_aside(engine: AsyncEngine, tmp_path: Path) -> None:
    writer = _writer(_FailsEachBatchOnce(store_for(engine)), tmp_path)
    events = [make_event() for _ in range(5)]
    _spool(writer, events)
    assert await writer.flush() == 5
    assert await _stored_ids(engine) == [e["id"] for e in events]
    assert _dead_letters(tmp_path) == [] and writer.rejected == 0
    await writer.close(5)


async def test_a_schema_the_writer_does_not_match_is_an_outage_not_poison(engine: AsyncEngine, tmp_path: Path) -> None:
    # Every event fails while the database answers: setting them all aside would empty the spool into the
    # dead-letter file. A missing column says "schema", not "this event".
    writer = _writer(store_for(engine), tmp_path)
    events = [make_event() for _ in range(30)]
    _spool(writer, events)
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE usage_events DROP COLUMN attempts"))
    with pytest.raises(Exception):  # noqa: B017 - the backend's undefined-column error
        await writer.flush()
    assert _dead_letters(tmp_path) == [] and writer.rejected == 0
    assert all(segment.committed == 0 for segment in writer.spool.segments())

    async with engine.begin() as conn:  # the migration is applied after all
        await conn.execute(text("ALTER TABLE usage_events ADD COLUMN attempts INTEGER"))
    assert await writer.flush() == 30
    assert await _stored_ids(engine) == [e["id"] for e in events]
    await writer.close(5)


async def _own_database(instance: PostgresInstance) -> str:
    url = await instance.create_database(f"tg_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(database.upgrade, url)
    return url


async def test_postgres_down_sets_nothing_aside_and_advances_nothing(
    own_postgres: PostgresInstance, tmp_path: Path
) -> None:
    engine = create_engine(await _own_database(own_postgres))
    writer = _writer(store_for(engine), tmp_path)
    good = [make_event() for _ in range(40)]
    poison = make_event(**POISONS["cost beyond bigint"])
    _spool(writer, [*good[:10], poison, *good[10:]])

    await asyncio.to_thread(own_postgres.stop)
    for _ in range(2):
        with pytest.raises(OSError):
            await writer.flush()
    assert _dead_letters(tmp_path) == [] and writer.rejected == 0
    assert all(segment.committed == 0 for segment in writer.spool.segments())

    await asyncio.to_thread(own_postgres.start)
    assert await writer.flush() == 40
    assert [r["id"] for r in _dead_letters(tmp_path)] == [poison["id"]]
    assert await _stored_ids(engine) == [e["id"] for e in good]
    await writer.close(5)
    await engine.dispose()


class _OutageDuringBisection:
    """The real store, but the database goes down right after it refuses the first half of the batch: that
    half's error is a data error, so only the probe can tell that the database is gone."""

    def __init__(self, store: EventStore, instance: PostgresInstance) -> None:
        self.store = store
        self.instance = instance
        self.writes = 0

    async def write(self, events: Sequence[dict[str, Any]]) -> int:
        self.writes += 1
        try:
            return await self.store.write(events)
        except Exception:
            if self.writes == 2:
                await asyncio.to_thread(self.instance.stop)
            raise

    async def ping(self) -> bool:
        return await self.store.ping()


async def test_an_outage_in_the_middle_of_isolating_a_refused_event_sets_nothing_aside(
    own_postgres: PostgresInstance, tmp_path: Path
) -> None:
    engine = create_engine(await _own_database(own_postgres))
    store = _OutageDuringBisection(store_for(engine), own_postgres)
    writer = _writer(store, tmp_path, batch_size=100)
    good = [make_event() for _ in range(20)]
    poison = make_event(**POISONS["cost beyond bigint"])
    _spool(writer, [*good[:3], poison, *good[3:]])  # in the first half

    with pytest.raises(OverflowError):  # the refusal's own error, raised as an outage: the probe failed
        await writer.flush()
    assert store.writes == 2
    assert _dead_letters(tmp_path) == [] and writer.rejected == 0
    assert all(segment.committed == 0 for segment in writer.spool.segments())

    await asyncio.to_thread(own_postgres.start)
    assert await writer.flush() == 20
    assert [r["id"] for r in _dead_letters(tmp_path)] == [poison["id"]]
    assert await _stored_ids(engine) == [e["id"] for e in good]
    await writer.close(5)
    await engine.dispose()
