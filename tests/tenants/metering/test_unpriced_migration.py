"""Migration 0008 on SQLite and Postgres: usage stored before it stays valid and readable, and new usage is written
beside it into the same rollups."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tenantgate import database
from tenantgate.tenants.metering import reports
from tenantgate.tenants.metering.models import UsageEventRow
from tenantgate.tenants.metering.pricing import PriceBook
from tenantgate.tenants.metering.store import row_of, store_for
from tenantgate.tenants.metering.writer import price_event
from tests.conftest import _create_pg_database
from tests.support.metering import make_event

DEC_8 = 1_796_688_000


@pytest.fixture(params=["sqlite", "postgres"])
def url_before(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        database.upgrade(url, "0007")
        yield url
        return
    url, drop = _create_pg_database(request.getfixturevalue("postgres_server"))
    try:
        database.upgrade(url, "0007")
        yield url
    finally:
        drop()


_OLD_EVENT = """
INSERT INTO usage_events (id, request_id, occurred_at, tenant_id, api_key_id, endpoint, category, model, upstream,
  status, stream, billable, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, input_audio_tokens,
  output_audio_tokens, image_tokens, quantity, client_disconnected, attempts, cost_input_nusd,
  cost_cached_input_nusd, cost_output_nusd, price_version)
VALUES ('evt_old', 'req_old', :at, 'ten_a', 'key_a', '/v1/chat/completions', 'completions', 'gpt-4o-mini',
  'default', 200, false, true, 1000, 0, 0, 0, 0, 0, 0, 0, false, 1, 150000, 0, 0, '2026-11-01')
"""
_OLD_ROLLUP = """
INSERT INTO usage_rollups (width, tenant_id, bucket_start, api_key_id, model, category, requests, estimated_requests,
  input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, input_audio_tokens, output_audio_tokens,
  image_tokens, quantity, cost_input_nusd, cost_cached_input_nusd, cost_output_nusd)
VALUES (:width, 'ten_a', :bucket, 'key_a', 'gpt-4o-mini', 'completions', 1, 0, 1000, 0, 0, 0, 0, 0, 0, 0, 150000, 0, 0)
"""


def test_usage_from_before_the_migration_stays_valid(url_before: str) -> None:
    async def before() -> None:
        engine = database.create_engine(url_before)
        at = datetime.fromtimestamp(DEC_8, UTC)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(_OLD_EVENT), {"at": at})
                for width in (60, 3600, 86400):
                    await conn.execute(text(_OLD_ROLLUP), {"width": width, "bucket": DEC_8 // width * width})
        finally:
            await engine.dispose()

    asyncio.run(before())
    database.upgrade(url_before)

    async def after() -> None:
        engine = database.create_engine(url_before)
        try:
            book = PriceBook.load()
            new = [
                make_event(tenant_id="ten_a", occurred_at=DEC_8 + 10, input_tokens=1000, output_tokens=0),
                make_event(tenant_id="ten_a", occurred_at=DEC_8 + 20, model="acme", response_model=None),
            ]
            assert await store_for(engine).write([row_of(price_event(book, event)) for event in new]) == 2
            async with engine.connect() as conn:
                (old,) = (await conn.execute(select(UsageEventRow).where(UsageEventRow.id == "evt_old"))).all()
                (invoice,) = await reports.invoices(conn, start=DEC_8 - 86400, end=DEC_8 + 86400)
            as_json = reports.event_json(old)
            assert (as_json["cost_usd"], as_json["unpriced"], old.cost_unit_nusd) == (
                "0.000150000",
                None,
                0,
            )
            lines = {line["model"]: line for line in invoice.as_json()["lines"]}
            assert (lines["gpt-4o-mini"]["requests"], lines["gpt-4o-mini"]["cost_usd"]) == (2, "0.000300000")
            assert (lines["acme"]["unpriced_requests"], lines["acme"]["cost_usd"]) == (1, None)
        finally:
            await engine.dispose()

    asyncio.run(after())
