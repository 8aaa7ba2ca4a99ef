"""The batch writer on SQLite and Postgres: exactly once, in order, across crashes and damaged spools."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantgate.database import create_engine
from tenantgate.tenants.metering.events import encode
from tenantgate.tenants.metering.pricing import PriceBook
from tenantgate.tenants.metering.spool import Spool
from tenantgate.tenants.metering.store import store_for
from tenantgate.tenants.metering.writer import MeterWriter
from tests.support.metering import make_event


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def _writer(engine: AsyncEngine, directory: Path, batch_size: int = 100) -> MeterWriter:
    spool = Spool(directory)
    spool.open()
    return MeterWriter(spool, store_for(engine), PriceBook.load(), interval=60, batch_size=batch_size)


def _files(directory: Path, pattern: str) -> list[Path]:
    return list(directory.glob(pattern))


async def _rows(engine: AsyncEngine, sql: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql))).all())


async def _rollup_totals(engine: AsyncEngine) -> list[Any]:
    return await _rows(
        engine,
        "SELECT width, sum(requests), sum(input_tokens), sum(output_tokens), sum(cost_output_nusd) "
        "FROM usage_rollups GROUP BY width ORDER BY width",
    )


async def test_spooled_events_are_written_once_in_spool_order(engine: AsyncEngine, tmp_path: Path) -> None:
    writer = _writer(engine, tmp_path, batch_size=7)
    events = [make_event(input_tokens=i + 1) for i in range(50)]
    for event in events:
        writer.spool.append(encode(event))
    assert await writer.flush() == 50
    assert await writer.flush() == 0
    rows = await _rows(engine, "SELECT id, input_tokens, price_version, cost_input_nusd FROM usage_events ORDER BY seq")
    assert [r[0] for r in rows] == [e["id"] for e in events]
    # Priced with the table in effect now: 1 gpt-4o-mini input token = 150 nano-USD.
    assert rows[0][2] == PriceBook.load().current_version and rows[0][3] == 150
    assert [tuple(r) for r in await _rollup_totals(engine)] == [
        (width, 50, sum(range(1, 51)), 250, 250 * 600) for width in (60, 3600, 86400)
    ]
    await writer.close(5)


async def test_replay_after_a_crash_between_commit_and_checkpoint_counts_nothing_twice(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    first = _writer(engine, tmp_path / "a")
    for i in range(20):
        first.spool.append(encode(make_event(output_tokens=i)))
    segment = first.spool.active
    assert segment is not None
    # The copy is what a crash right after the commit leaves behind: the lines without their checkpoint.
    await first.flush()
    (tmp_path / "b").mkdir()
    shutil.copy(segment.path, tmp_path / "b" / "seg-00000000000000000000000000.spool")
    before = await _rollup_totals(engine)
    await first.close(5)

    second = _writer(engine, tmp_path / "b")
    assert await second.flush() == 0  # adopted and replayed: every id already stored
    assert await _rollup_totals(engine) == before
    assert (await _rows(engine, "SELECT count(*) FROM usage_events"))[0][0] == 20
    await second.close(5)
    assert list((tmp_path / "b").glob("seg-*")) == []  # replayed segments are removed


async def test_events_left_by_a_stopped_process_are_written_by_the_next(engine: AsyncEngine, tmp_path: Path) -> None:
    gone = _writer(engine, tmp_path)
    for _ in range(5):
        gone.spool.append(encode(make_event()))
    gone.spool.close()  # as if the database had been down until the process stopped
    heir = _writer(engine, tmp_path)
    heir.spool.append(encode(make_event()))
    assert await heir.flush() == 6
    await heir.close(5)


async def test_a_damaged_line_is_quarantined_and_the_rest_written(engine: AsyncEngine, tmp_path: Path) -> None:
    writer = _writer(engine, tmp_path)
    writer.spool.append(encode(make_event()))
    writer.spool.append(b'{"id": "evt_broken", "this is not\n')
    writer.spool.append(b'{"id": "evt_incomplete"}\n')
    writer.spool.append(encode(make_event()))
    assert await writer.flush() == 2
    segment = writer.spool.active
    assert segment is not None
    rejected = segment.path.with_name(segment.path.stem + ".rejected").read_bytes()
    assert b"evt_broken" in rejected and b"evt_incomplete" in rejected
    await writer.close(5)


async def test_refused_and_failed_exchanges_are_stored_but_not_billed(engine: AsyncEngine, tmp_path: Path) -> None:
    writer = _writer(engine, tmp_path)
    writer.spool.append(encode(make_event(status=429, billable=False, usage_source=None, input_tokens=0)))
    writer.spool.append(encode(make_event(status=502, billable=False, usage_source=None, input_tokens=0)))
    writer.spool.append(encode(make_event(input_tokens=7)))
    assert await writer.flush() == 3
    assert next(tuple(r) for r in await _rollup_totals(engine))[:3] == (60, 1, 7)
    costs = await _rows(engine, "SELECT status, price_version FROM usage_events ORDER BY seq")
    assert [tuple(r) for r in costs] == [(429, None), (502, None), (200, PriceBook.load().current_version)]
    await writer.close(5)


async def test_full_segments_are_sealed_written_and_removed(engine: AsyncEngine, tmp_path: Path) -> None:
    writer = _writer(engine, tmp_path, batch_size=10)
    writer.spool.segment_bytes = 4000  # a few events per segment
    ids = []
    for round_ in range(5):
        for _ in range(12):
            event = make_event()
            ids.append(event["id"])
            writer.spool.append(encode(event))
        if round_ == 2:
            # Appends keep coming while the database is away: sealed segments wait their turn, in order.
            writer.spool.install(writer.spool.new_segment())
            for _ in range(3):
                event = make_event()
                ids.append(event["id"])
                writer.spool.append(encode(event))
        await writer.flush()
    rows = await _rows(engine, "SELECT id FROM usage_events ORDER BY seq")
    assert [r[0] for r in rows] == ids
    assert len(_files(tmp_path, "seg-*.spool")) == 1  # only the active one is left
    await writer.close(5)
    assert _files(tmp_path, "seg-*") == []
