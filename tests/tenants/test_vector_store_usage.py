"""Vector store storage as the Usage API reports it, on both database backends: each hour keeps the most a store
held, a bucket sums the most each store held in the hours it overlaps, and a query names its tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantgate.database import create_engine, create_sessionmaker
from tenantgate.tenants.models import Tenant
from tenantgate.tenants.vector_store_usage import VectorStoreUsageLog, usage_buckets

DAY = 86_400
T0 = 1_800_000_000 // DAY * DAY  # a UTC midnight


@pytest.fixture
async def recorded(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    sessions = create_sessionmaker(engine)
    async with sessions() as session, session.begin():
        session.add_all([Tenant(id="ten_a", name="a"), Tenant(id="ten_b", name="b")])
    log = VectorStoreUsageLog(sessions)
    for store, at, size in (
        ("vs_a1", T0 + 60, 100),
        ("vs_a1", T0 + 1800, 300),  # the same hour, more: the hour keeps 300
        ("vs_a1", T0 + 3000, 200),  # the same hour, less: still 300
        ("vs_a1", T0 + 3600 + 10, 50),  # the next hour
        ("vs_a2", T0 + 7200 + 5, 1000),
    ):
        await log.record("ten_a", store, size, at)
    await log.record("ten_b", "vs_b1", 7, T0 + 10)
    yield engine
    await engine.dispose()


async def test_hours_keep_the_most_and_buckets_sum_the_stores(recorded: AsyncEngine) -> None:
    engine = recorded
    hours = [(T0 + h * 3600, T0 + (h + 1) * 3600) for h in range(4)]
    async with engine.connect() as conn:
        assert await usage_buckets(conn, ["ten_a"], hours) == [{"ten_a": 300}, {"ten_a": 50}, {"ten_a": 1000}, {}]
        # One day: the most vs_a1 held in any of its hours, plus vs_a2's.
        assert await usage_buckets(conn, ["ten_a"], [(T0, T0 + DAY)]) == [{"ten_a": 1300}]
        # A minute lies in one hour: that hour's level.
        assert await usage_buckets(conn, ["ten_a"], [(T0 + 3660, T0 + 3720)]) == [{"ten_a": 50}]
        assert await usage_buckets(conn, ["ten_b"], [(T0, T0 + DAY)]) == [{"ten_b": 7}]
        assert await usage_buckets(conn, [], [(T0, T0 + DAY)]) == [{}]
        assert await usage_buckets(conn, None, [(T0, T0 + DAY)]) == [{"ten_a": 1300, "ten_b": 7}]


async def test_a_store_id_is_never_counted_for_a_second_tenant(recorded: AsyncEngine) -> None:
    engine = recorded
    log = VectorStoreUsageLog(create_sessionmaker(engine))
    await log.record("ten_b", "vs_a1", 10**9, T0 + 60)  # B's process names A's store: it changes nothing
    async with engine.connect() as conn:
        assert await usage_buckets(conn, ["ten_b"], [(T0, T0 + 3600)]) == [{"ten_b": 7}]
        assert await usage_buckets(conn, ["ten_a"], [(T0, T0 + 3600)]) == [{"ten_a": 300}]
