"""First owner wins, in every place an owner is kept: process memory, Redis and the database (both backends)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenantgate.database import create_engine, create_sessionmaker
from tenantgate.tenants.models import Tenant
from tenantgate.tenants.objects import MISSING_SECONDS, Account, ObjectOwnership, Owner
from tenantgate.wire.resp import RespClient

A = Owner("ten_a", "default", "platform", "key_a")
B = Owner("ten_b", "default", "tenant", "key_b")


@pytest.fixture(params=["memory+db", "redis+db"])
async def ownership_pair(
    request: pytest.FixtureRequest, database_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[ObjectOwnership, ObjectOwnership, RespClient | None]]:
    """Two processes' ownership records over one database (and one Redis in the redis variant)."""
    engine = create_engine(database_url)
    sessions = create_sessionmaker(engine)
    async with sessions() as session, session.begin():
        session.add_all([Tenant(id="ten_a", name="a"), Tenant(id="ten_b", name="b")])
    clients = [RespClient.from_url(redis_url) for _ in range(2)] if request.param == "redis+db" else [None, None]
    first, second = (ObjectOwnership(sessions, client, redis_prefix) for client in clients)
    yield first, second, clients[0]
    for client in clients:
        if client is not None:
            await client.aclose()
    await engine.dispose()


async def test_a_second_claim_never_replaces_the_first(
    ownership_pair: tuple[ObjectOwnership, ObjectOwnership, RespClient | None],
) -> None:
    first, second, _ = ownership_pair
    assert await first.record("resp_1", "response", A) is None
    await first.flush()
    assert await second.record("resp_1", "response", B) == A  # another process, a different tenant: refused
    assert await first.record("resp_1", "response", B) == A  # the same process: refused from memory
    await second.flush()
    for ownership in (first, second):
        assert await ownership.owner("resp_1") == A
    assert first.conflicts + second.conflicts == 2


async def test_the_same_tenant_recording_again_is_no_conflict(
    ownership_pair: tuple[ObjectOwnership, ObjectOwnership, RespClient | None],
) -> None:
    first, second, _ = ownership_pair
    assert await first.record("resp_2", "response", A) is None
    await first.flush()
    again = Owner(A.tenant_id, A.upstream, A.account, "another_key_of_a")
    assert await second.record("resp_2", "response", again) is None
    assert second.conflicts == 0


@pytest.mark.parametrize("ownership_pair", ["redis+db"], indirect=True)
async def test_the_database_owner_stands_when_redis_lost_its_keys(
    ownership_pair: tuple[ObjectOwnership, ObjectOwnership, RespClient | None], redis_prefix: str
) -> None:
    first, second, redis = ownership_pair
    assert redis is not None
    assert await first.record("resp_3", "response", A) is None
    await first.flush()
    await redis.execute("DEL", f"{redis_prefix}:obj:resp_3")  # a Redis restart without persistence, an eviction
    assert await second.record("resp_3", "response", B) is None  # Redis alone cannot know any more...
    await second.flush()  # ...but the batch write finds the stored owner and puts it back everywhere
    assert await second.owner("resp_3") == A
    assert await first.owner("resp_3") == A
    assert second.conflicts == 1
    third = ObjectOwnership(second._sessions, redis, redis_prefix)
    assert await third.owner("resp_3") == A  # Redis was corrected too


async def test_owners_written_before_accounts_existed_read_as_platform() -> None:
    assert Owner.decode("ten_a default") == Owner("ten_a", "default", "platform", None)
    assert Owner.decode(B.encode()) == B


async def test_the_kind_recorded_is_what_every_process_reads(
    ownership_pair: tuple[ObjectOwnership, ObjectOwnership, RespClient | None],
) -> None:
    first, second, _ = ownership_pair
    assert await first.record("file-k1", "file", A) is None
    await first.flush()
    assert (await first.owner("file-k1")).kind == "file"  # type: ignore[union-attr]
    assert (await second.owner("file-k1")).kind == "file"  # type: ignore[union-attr]
    assert await second.record("file-k1", "batch", A) is None  # the same owner again: the first kind stays
    assert (await second.owner("file-k1")).kind == "file"  # type: ignore[union-attr]


@pytest.mark.parametrize("ownership_pair", ["redis+db"], indirect=True)
async def test_a_record_from_before_kinds_gets_its_kind_from_the_database(
    ownership_pair: tuple[ObjectOwnership, ObjectOwnership, RespClient | None], redis_prefix: str
) -> None:
    first, second, redis = ownership_pair
    assert redis is not None
    assert await first.record("batch_old", "batch", A) is None
    await first.flush()
    await redis.execute("SET", f"{redis_prefix}:obj:batch_old", "ten_a default platform key_a")  # the old shape
    owner = await second.owner("batch_old")
    assert owner == A and owner is not None and owner.kind == "batch"


_word = st.text(alphabet=st.characters(exclude_characters=" ", exclude_categories=["Cs"]), min_size=1, max_size=20)


@given(
    tenant=_word,
    upstream=_word,
    account=st.sampled_from(["platform", "tenant"]),
    key=st.none() | _word.filter(lambda k: k != "-"),
    kind=st.none() | _word.filter(lambda k: k != "-"),
)
def test_an_owner_reads_back_as_written(
    tenant: str, upstream: str, account: Account, key: str | None, kind: str | None
) -> None:
    owner = Owner(tenant, upstream, account, key, kind)
    decoded = Owner.decode(owner.encode())
    assert decoded == owner and decoded.kind == kind


async def test_a_miss_is_remembered_briefly_and_forgotten_by_a_record(
    ownership_pair: tuple[ObjectOwnership, ObjectOwnership, RespClient | None],
) -> None:
    first, second, _ = ownership_pair
    assert await first.owner("file-later") is None
    assert await second.record("file-later", "file", A) is None  # made on another process just after
    await second.flush()
    assert await first.owner("file-later") is None  # this process still has the miss...
    await asyncio.sleep(MISSING_SECONDS + 0.1)
    assert await first.owner("file-later") == A  # ...for at most MISSING_SECONDS

    assert await first.owner("file-here") is None
    assert await first.record("file-here", "file", A) is None  # made on this process: known at once
    assert await first.owner("file-here") == A


class _CountingSessions:
    """A session factory that counts the sessions opened (each one a database round trip here)."""

    def __init__(self, inner: async_sessionmaker[AsyncSession]) -> None:
        self.inner = inner
        self.opened = 0

    def __call__(self) -> AsyncSession:
        self.opened += 1
        return self.inner()


async def test_a_remembered_miss_asks_no_store_again(
    ownership_pair: tuple[ObjectOwnership, ObjectOwnership, RespClient | None], redis_prefix: str
) -> None:
    first, _, redis = ownership_pair
    sessions = _CountingSessions(first._sessions)
    ownership = ObjectOwnership(cast(async_sessionmaker[AsyncSession], sessions), redis, redis_prefix)
    for _ in range(5):
        assert await ownership.owner("file-never") is None
    assert sessions.opened == 1
    await asyncio.sleep(MISSING_SECONDS + 0.1)
    assert await ownership.owner("file-never") is None
    assert sessions.opened == 2  # remembered for MISSING_SECONDS only


class _CountingRedis:
    """A Redis client that counts the commands sent."""

    def __init__(self, inner: RespClient) -> None:
        self.inner = inner
        self.commands = 0

    async def execute(self, *args: str | int | bytes) -> object:
        self.commands += 1
        return await self.inner.execute(*args)


async def test_a_foreign_id_costs_the_asker_what_an_unknown_id_costs(
    ownership_pair: tuple[ObjectOwnership, ObjectOwnership, RespClient | None], redis_prefix: str
) -> None:
    """Whether someone else owns an id or nobody does, the 404 takes the same trips to the stores (so the same
    time): first probe and repeated ones. The owner's own lookups stay in memory."""
    first, _, redis = ownership_pair
    assert await first.record("file-of-a", "file", A) is None
    await first.flush()
    sessions = _CountingSessions(first._sessions)
    counting = _CountingRedis(redis) if redis is not None else None
    ownership = ObjectOwnership(
        cast(async_sessionmaker[AsyncSession], sessions), cast(RespClient, counting), redis_prefix
    )
    assert await ownership.owner("file-of-a", asker=A.tenant_id) == A  # the owner: now in memory

    def trips() -> tuple[int, int]:
        return sessions.opened, counting.commands if counting is not None else 0

    costs = []
    for object_id in ("file-of-a", "file-of-nobody"):
        before = trips()
        assert (await ownership.owner(object_id, asker=B.tenant_id)) in (A, None)
        after_first = trips()
        for _ in range(3):
            await ownership.owner(object_id, asker=B.tenant_id)
        costs.append((tuple(a - b for a, b in zip(after_first, before, strict=True)), trips() == after_first))
    assert costs[0] == costs[1]  # the same trips for the foreign id as for the unknown one...
    assert costs[0][0][0] == 1 and costs[0][1]  # ...one database query first, none while remembered
    before = trips()
    assert await ownership.owner("file-of-a", asker=A.tenant_id) == A
    assert trips() == before
