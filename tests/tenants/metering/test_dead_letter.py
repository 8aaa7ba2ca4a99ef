"""Events the database refuses: set aside so everyone else's usage is stored, never confused with an outage, and
stored later by `tenantgate usage replay-rejected`. On SQLite and Postgres."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from tenantgate import database
from tenantgate.cli import app
from tenantgate.database import create_engine
from tenantgate.tenants.metering.deadletter import FILE_NAME
from tenantgate.tenants.metering.events import encode
from tenantgate.tenants.metering.pricing import PriceBook
from tenantgate.tenants.metering.replay import replay_rejected
from tenantgate.tenants.metering.spool import Spool
from tenantgate.tenants.metering.store import ROW_ID, EventStore, Row, store_for
from tenantgate.tenants.metering.writer import MeterWriter
from tests.conftest import SECRET_KEY
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


def _quarantined(directory: Path) -> list[bytes]:
    return [path.read_bytes() for path in directory.glob("*.rejected")]


def _claimed(directory: Path) -> list[Path]:
    """Dead-letter files a replay moved aside and did not finish with."""
    return list(directory.glob(FILE_NAME + ".replaying-*"))


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


async def test_a_refused_event_after_an_unreadable_line_is_set_aside_with_its_own_line(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """The writer keeps no spool lines in memory: it reads a refused event's line again. An unreadable line before
    it in the same batch must not shift which line is set aside."""
    writer = _writer(store_for(engine), tmp_path)
    good = [make_event(input_tokens=i + 1) for i in range(4)]
    bad = make_event(**POISONS["cost beyond bigint"])
    writer.spool.append(encode(good[0]))
    writer.spool.append(b"not an event\n")
    writer.spool.append(encode(good[1]))
    writer.spool.append(encode(bad))
    _spool(writer, good[2:])

    assert await writer.flush() == 4

    assert await _stored_ids(engine) == [e["id"] for e in good]
    records = _dead_letters(tmp_path)
    assert [(r["id"], r["line"].encode() + b"\n") for r in records] == [(bad["id"], encode(bad))]
    assert _quarantined(tmp_path) == [b"not an event\n"]  # set apart as unreadable, not as refused
    await writer.close(5)


class _FailsEachBatchOnce:
    """The real store, except that a batch fails with a data-like error the first time it is written."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.seen: set[tuple[str, ...]] = set()

    async def write(self, events: Sequence[Row]) -> int:
        ids = tuple(e[ROW_ID] for e in events)
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

    async def write(self, events: Sequence[Row]) -> int:
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


def _replay(database_url: str, spool_dir: Path, expect: int = 0) -> dict[str, Any]:
    env = {"TENANTGATE_DATABASE_URL": database_url, "TENANTGATE_SECRET_KEY": SECRET_KEY, "TENANTGATE_ENV": "production"}
    args = ["usage", "replay-rejected", "--spool-dir", str(spool_dir), "--json"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == expect, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


async def _refuse_model(engine: AsyncEngine, model: str) -> None:
    """An operator's rule the database enforces on new events (a check constraint; a trigger on SQLite)."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text(f"ALTER TABLE usage_events ADD CONSTRAINT refuse CHECK (model <> '{model}')"))
        else:
            await conn.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE INSERT ON usage_events WHEN NEW.model = '{model}' "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )


async def _accept_model(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("ALTER TABLE usage_events DROP CONSTRAINT refuse"))
        else:
            await conn.execute(text("DROP TRIGGER refuse"))


async def test_replay_stores_rejected_events_once_their_cause_is_fixed_and_is_idempotent(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    await _refuse_model(engine, "gpt-4o-mini-refused")
    writer = _writer(store_for(engine), tmp_path)
    good = [make_event() for _ in range(10)]
    refused = make_event(model="gpt-4o-mini-refused", output_tokens=7)
    overflow = make_event(**POISONS["cost beyond bigint"])
    _spool(writer, [*good[:5], refused, overflow, *good[5:]])
    assert await writer.flush() == 10
    await writer.close(5)
    assert [r["id"] for r in _dead_letters(tmp_path)] == [refused["id"], overflow["id"]]

    # Nothing fixed yet: both stay, with a fresh error, and the command says so.
    report = await asyncio.to_thread(_replay, database_url, tmp_path, 1)
    assert report == {"rejected": 2, "stored": 0, "already_stored": 0, "still_rejected": 2}
    kept = _dead_letters(tmp_path)
    assert sorted(r["id"] for r in kept) == sorted([refused["id"], overflow["id"]])

    # The operator drops the rule and corrects the impossible token count in the file.
    await _accept_model(engine)
    fixed = []
    for record in kept:
        event = orjson.loads(record["line"])
        if event["id"] == overflow["id"]:
            event["output_tokens"] = 3
        fixed.append(orjson.dumps({**record, "line": orjson.dumps(event).decode()}) + b"\n")
    (tmp_path / FILE_NAME).write_bytes(b"".join(fixed))

    report = await asyncio.to_thread(_replay, database_url, tmp_path)
    assert report == {"rejected": 2, "stored": 2, "already_stored": 0, "still_rejected": 0}
    assert _dead_letters(tmp_path) == []
    assert sorted(await _stored_ids(engine)) == sorted(e["id"] for e in [*good, refused, overflow])
    stored = dict(await _rows(engine, "SELECT id, cost_output_nusd FROM usage_events"))
    assert stored[refused["id"]] == 7 * 600 and stored[overflow["id"]] == 3 * 600  # priced again
    assert await _rollups(engine) == _totals([*good, refused, {**overflow, "output_tokens": 3}])

    # Again, and with a record that is already stored (a copy, as a crash can leave): nothing changes twice.
    assert await asyncio.to_thread(_replay, database_url, tmp_path) == {
        "rejected": 0,
        "stored": 0,
        "already_stored": 0,
        "still_rejected": 0,
    }
    (tmp_path / FILE_NAME).write_bytes(fixed[0] + fixed[0])
    report = await asyncio.to_thread(_replay, database_url, tmp_path)
    assert report == {"rejected": 1, "stored": 0, "already_stored": 1, "still_rejected": 0}
    assert len(await _stored_ids(engine)) == 12
    assert await _rollups(engine) == _totals([*good, refused, {**overflow, "output_tokens": 3}])


async def test_replay_keeps_every_rejected_event_when_the_database_is_down(
    own_postgres: PostgresInstance, tmp_path: Path
) -> None:
    url = await _own_database(own_postgres)
    engine = create_engine(url)
    writer = _writer(store_for(engine), tmp_path)
    poisons = [make_event(**POISONS["cost beyond bigint"]) for _ in range(2)]
    _spool(writer, [make_event(), *poisons])
    assert await writer.flush() == 1
    await writer.close(5)
    before = (tmp_path / FILE_NAME).read_bytes()
    assert len(before.splitlines()) == 2

    await asyncio.to_thread(own_postgres.stop)
    with pytest.raises(OSError):
        await replay_rejected(tmp_path, store_for(engine), PriceBook.load())
    assert (tmp_path / FILE_NAME).read_bytes() == before
    assert _claimed(tmp_path) == []
    await engine.dispose()

    env = {"TENANTGATE_DATABASE_URL": url, "TENANTGATE_SECRET_KEY": SECRET_KEY, "TENANTGATE_ENV": "production"}
    args = ["usage", "replay-rejected", "--spool-dir", str(tmp_path)]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)
    assert result.exit_code == 1 and "the rejected events were kept" in result.output
    assert (tmp_path / FILE_NAME).read_bytes() == before
