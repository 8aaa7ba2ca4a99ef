"""Room under a tenant's file limits, on both database backends: holds taken at once by two processes never exceed
the limits together, and every way an upload ends gives its room back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantgate.database import create_engine, create_sessionmaker
from tenantgate.tenants.file_room import UPLOAD_SECONDS, FileLimits, FileRoom
from tenantgate.tenants.models import Tenant, TenantObject, utcnow
from tenantgate.tenants.object_index import Entry, ObjectIndex

LIMITS = FileLimits(count=3, bytes=1000)


@pytest.fixture
async def rooms(database_url: str) -> AsyncIterator[tuple[FileRoom, FileRoom]]:
    """Two processes' view of one database (on SQLite, one process's: it serves one)."""
    engine = create_engine(database_url)
    sessions = create_sessionmaker(engine)
    async with sessions() as session, session.begin():
        session.add_all([Tenant(id="ten_a", name="a"), Tenant(id="ten_b", name="b")])
    first = FileRoom(sessions)
    second = FileRoom(sessions) if engine.dialect.name == "postgresql" else first
    yield first, second
    await engine.dispose()


async def _add(room: FileRoom, row: TenantObject) -> None:
    async with room._sessions() as session, session.begin():
        session.add(row)


def _file(object_id: str, size: int, tenant_id: str = "ten_a", **fields: object) -> TenantObject:
    values: dict[str, object] = {
        "kind": "file",
        "upstream": "default",
        "account": "platform",
        "created": int(time.time()),
    }
    values.update(fields)
    return TenantObject(id=object_id, tenant_id=tenant_id, bytes=size, **values)


async def test_parallel_holds_never_pass_the_limits_together(rooms: tuple[FileRoom, FileRoom]) -> None:
    first, second = rooms
    await _add(first, _file("file-stored", 400))
    asked = [(first if i % 2 else second).hold("ten_a", LIMITS, least=250, most=250) for i in range(12)]
    holds = [hold for hold, _ in await asyncio.gather(*asked) if hold is not None]
    assert len(holds) == 2  # 400 + 2 x 250 fits, a third would not (and the count, 3, is reached)
    used = await first.used("ten_a")
    assert (used.files, used.bytes) == (3, 900)
    other, _ = await second.hold("ten_b", LIMITS, least=1000, most=1000)  # another tenant's room is its own
    assert other is not None and other.bytes == 1000


async def test_a_hold_is_cut_to_the_room_left_and_given_back_on_release(rooms: tuple[FileRoom, FileRoom]) -> None:
    first, second = rooms
    await _add(first, _file("file-stored", 700))
    hold, _ = await first.hold("ten_a", LIMITS, least=0, most=500)
    assert hold is not None and hold.bytes == 300
    refused, used = await second.hold("ten_a", LIMITS, least=1, most=1)
    assert refused is None and used.bytes == 1000
    await first.release(hold)
    again, _ = await second.hold("ten_a", LIMITS, least=300, most=300)
    assert again is not None


async def test_the_file_an_upload_made_takes_its_holds_place_at_once(rooms: tuple[FileRoom, FileRoom]) -> None:
    """Two uploads filling the room exactly: the first one's file is indexed in the transaction that deletes its
    hold, so no reader ever counts both (the second upload was refused with 400 in that moment: 600 + 600 > 1000)."""
    first, second = rooms
    hold, _ = await first.hold("ten_a", LIMITS, least=0, most=600)
    assert hold is not None and hold.bytes == 600
    index = ObjectIndex(first._sessions)
    entry = Entry(id="file-made", tenant_id="ten_a", kind="file", upstream="default", account="platform",
                  created=int(time.time()), bytes=600)  # fmt: skip
    assert await index.add(entry, replacing=hold.id)
    used = await second.used("ten_a")
    assert (used.files, used.bytes) == (1, 600)  # the file, not the file and its hold
    other, _ = await second.hold("ten_a", LIMITS, least=400, most=400)
    assert other is not None and other.bytes == 400
    await first.release(hold)  # the upload's end gives back nothing more: its hold is gone already
    assert (await second.used("ten_a")).bytes == 1000


async def test_open_uploads_count_until_they_end_or_expire(rooms: tuple[FileRoom, FileRoom]) -> None:
    first, _ = rooms
    now = int(time.time())
    await _add(first, _file("upload_open", 600, kind="upload", status="pending"))
    await _add(first, _file("upload_done", 600, kind="upload", status="completed"))
    await _add(first, _file("upload_old", 600, kind="upload", status="pending", created=now - UPLOAD_SECONDS - 5))
    await _add(first, _file("file-gone", 600, deleted_at=utcnow()))
    used = await first.used("ten_a")
    assert (used.files, used.bytes) == (1, 600)
    refused, _ = await first.hold("ten_a", LIMITS, least=401, most=401)
    assert refused is None
    replacing, _ = await first.hold("ten_a", LIMITS, least=600, most=600, excluding="upload_open")
    assert replacing is not None  # an upload's complete holds its bytes in place of the open upload


async def test_a_hold_never_released_stops_counting(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = create_sessionmaker(engine)
    async with sessions() as session, session.begin():
        session.add(Tenant(id="ten_a", name="a"))
    room = FileRoom(sessions, hold_seconds=1)
    lost, _ = await room.hold("ten_a", LIMITS, least=1000, most=1000)  # its process was killed mid-upload
    assert lost is not None
    assert (await room.hold("ten_a", LIMITS, least=1, most=1))[0] is None
    await asyncio.sleep(2.1)
    assert (await room.hold("ten_a", LIMITS, least=1000, most=1000))[0] is not None
    async with sessions() as session:
        assert await session.get(TenantObject, lost.id) is None  # deleted by the next hold
    await engine.dispose()


_sizes = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_asks = st.lists(
    st.tuples(_sizes, _sizes),
    min_size=1,
    max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(asks=_asks, limit=st.integers(min_value=0, max_value=2**62), count=st.integers(min_value=0, max_value=4))
async def test_whatever_is_asked_the_holds_stay_within_the_limits(
    rooms: tuple[FileRoom, FileRoom], asks: list[tuple[int, int]], limit: int, count: int
) -> None:
    """``bytes`` of an upload is the caller's: any size, at any limit, grants only what fits."""
    first, second = rooms
    limits = FileLimits(count=count, bytes=limit)
    tenant_id = "ten_b"
    results = await asyncio.gather(
        *(
            (first if i % 2 else second).hold(tenant_id, limits, least=min(a, b), most=max(a, b))
            for i, (a, b) in enumerate(asks)
        )
    )
    holds = [hold for hold, _ in results if hold is not None]
    try:
        assert len(holds) <= count
        assert all(hold.bytes >= 0 for hold in holds)  # a negative hold would give room to the others
        assert sum(hold.bytes for hold in holds) <= limit
        for (a, b), (hold, _) in zip(asks, results, strict=True):
            if hold is not None:
                assert max(0, min(a, b)) <= hold.bytes <= max(0, a, b)
    finally:
        for hold in holds:
            await first.release(hold)
    used = await first.used(tenant_id)
    assert (used.files, used.bytes) == (0, 0)
