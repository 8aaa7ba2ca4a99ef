"""The invalidation log, on SQLite and Postgres: what servers without Redis read to drop revoked keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantgate import database
from tenantgate.core.principal import Limits, Principal
from tenantgate.tenants.cache import KeyCache
from tenantgate.tenants.invalidation import Invalidation, InvalidationBus
from tenantgate.tenants.invalidation_log import RETENTION, InvalidationLog, append
from tenantgate.tenants.models import InvalidationEntry, utcnow


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = database.create_engine(database_url)
    yield database.create_sessionmaker(engine)
    await engine.dispose()


async def _commit(sessions: async_sessionmaker[AsyncSession], *invalidations: Invalidation) -> None:
    async with database.session_scope(sessions) as session:
        await append(session, invalidations)


async def test_a_reader_gets_each_committed_entry_once_and_none_rolled_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _commit(sessions, Invalidation("key", "key_before"))
    reader = InvalidationLog(sessions)
    assert await reader.read() == []  # a starting process has nothing cached: earlier entries do not matter

    await _commit(sessions, Invalidation("key", "key_a"), Invalidation("tenant", "ten_1"))
    with pytest.raises(RuntimeError):
        async with database.session_scope(sessions) as session:
            await append(session, [Invalidation("key", "key_rolled_back")])
            raise RuntimeError("the change failed")
    await _commit(sessions, Invalidation("prices"))
    committed = [Invalidation("key", "key_a"), Invalidation("tenant", "ten_1"), Invalidation("prices")]
    assert await reader.read() == committed
    assert await reader.read() == []

    # What a newer process writes and this one does not know is dropped, not a reason to stop reading.
    async with database.session_scope(sessions) as session:
        session.add(InvalidationEntry(scope="someday", target_id="x"))
    await _commit(sessions, Invalidation("all"))
    assert await reader.read() == [Invalidation("all")]


async def test_old_entries_are_pruned_and_ids_keep_growing(sessions: async_sessionmaker[AsyncSession]) -> None:
    reader = InvalidationLog(sessions)
    await reader.read()
    await _commit(sessions, Invalidation("key", "key_old"), Invalidation("key", "key_old2"))
    assert len(await reader.read()) == 2
    async with database.session_scope(sessions) as session:
        await session.execute(update(InvalidationEntry).values(created_at=utcnow() - RETENTION - timedelta(1)))

    # The next write deletes every older entry; its own id must still be above those the reader has seen.
    await _commit(sessions, Invalidation("key", "key_new"))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(InvalidationEntry)) == 1
    assert await reader.read() == [Invalidation("key", "key_new")]


async def test_an_entry_that_commits_after_a_newer_one_is_still_read(postgres_url: str) -> None:
    """Postgres takes ids when rows are inserted: the entry with the lower id may commit last."""
    engine = database.create_engine(postgres_url)
    sessions = database.create_sessionmaker(engine)
    try:
        reader = InvalidationLog(sessions)
        await reader.read()
        async with sessions() as slow, slow.begin():
            await append(slow, [Invalidation("key", "key_slow")])  # takes its id now, commits at the end
            await _commit(sessions, Invalidation("key", "key_fast"))
            assert await reader.read() == [Invalidation("key", "key_fast")]
        assert await reader.read() == [Invalidation("key", "key_slow")]
        assert await reader.read() == []
    finally:
        await engine.dispose()


def _principal(key_id: str) -> Principal:
    return Principal(
        key_id=key_id,
        key_prefix="tg-x",
        key_name="k",
        tenant_id="ten_1",
        tenant_name="t",
        tenant_active=True,
        expires_at=None,
        key_limits=Limits(),
        tenant_limits=Limits(),
        allowed_models=None,
    )


async def test_without_redis_a_change_reaches_the_other_process_cache_within_a_second(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async def loader(key_hash: str) -> Principal:
        return _principal(key_hash)

    caches = [KeyCache(loader, ttl=60, negative_ttl=60) for _ in range(2)]
    buses = [InvalidationBus(cache, None, "unused", db_log=InvalidationLog(sessions)) for cache in caches]
    for bus in buses:
        await bus.start()
    try:
        for cache in caches:
            await cache.get("key_a")
            await cache.get("key_b")
        await _commit(sessions, Invalidation("key", "key_a"))
        started = time.monotonic()
        while any(len(cache) != 1 for cache in caches):
            assert time.monotonic() - started < 1.0, "not within a second"
            await asyncio.sleep(0.01)
    finally:
        for bus in buses:
            await bus.stop()


async def test_a_database_that_does_not_answer_does_not_hold_up_the_start() -> None:
    class Unanswered:
        async def read(self) -> list[Invalidation]:
            await asyncio.Event().wait()
            return []

    async def loader(key_hash: str) -> Principal:
        return _principal(key_hash)

    bus = InvalidationBus(KeyCache(loader, ttl=60, negative_ttl=60), None, "unused", db_log=Unanswered())  # type: ignore[arg-type]
    await asyncio.wait_for(bus.start(wait_seconds=0.05), timeout=2.0)  # the server starts; reading goes on
    await bus.stop()
