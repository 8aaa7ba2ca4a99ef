"""last_used_at is written in batches off the request path, never once per request."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import event, select

from tenantgate import database
from tenantgate.platform.app import create_app
from tenantgate.tenants import key_service, service
from tenantgate.tenants.last_used import LastUsedTracker
from tenantgate.tenants.models import ApiKey
from tenantgate.tenants.operation import CLI_ACTOR, Operation
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.support.server import ServedApp


def _count_key_updates(engine: Any) -> list[str]:
    statements: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_KEYS"):
            statements.append(statement)

    return statements


async def _keys(sessions: Any, count: int) -> list[str]:
    async with database.session_scope(sessions) as session:
        op = Operation(session, CLI_ACTOR, b"secret-key-0123456789")
        tenant = await service.create_tenant(op, name=f"used-{uuid.uuid4().hex[:8]}")
        return [(await key_service.create_key(op, tenant=tenant, name=f"k{i}")).key.id for i in range(count)]


async def _last_used(sessions: Any, key_ids: list[str]) -> dict[str, datetime | None]:
    async with sessions() as session:
        rows = (await session.execute(select(ApiKey.id, ApiKey.last_used_at).where(ApiKey.id.in_(key_ids)))).all()
    return {row[0]: row[1] for row in rows}


async def test_one_batched_write_for_many_uses(database_url: str) -> None:
    engine = database.create_engine(database_url)
    sessions = database.create_sessionmaker(engine)
    try:
        first, second = await _keys(sessions, 2)
        updates = _count_key_updates(engine)
        tracker = LastUsedTracker(sessions, interval_seconds=3600)
        before = datetime.now(UTC) - timedelta(seconds=1)
        for _ in range(1000):
            tracker.touch(first)
        tracker.touch(second)
        assert updates == []
        assert await tracker.flush() == 2
        assert len(updates) == 1  # one executemany for every key used since the last flush
        used = await _last_used(sessions, [first, second])
        assert all(at is not None and at >= before for at in used.values())
        assert await tracker.flush() == 0 and len(updates) == 1

        # Another process flushing an older use does not move the time back.
        other = LastUsedTracker(sessions, interval_seconds=3600)
        other._pending[first] = time.time() - 3600
        await other.flush()
        assert (await _last_used(sessions, [first]))[first] == used[first]
    finally:
        await engine.dispose()


def test_requests_do_not_write_and_shutdown_flushes(database_url: str, dev_upstream: str) -> None:
    app = create_app(
        make_settings(database_url=database_url, upstream_base_url=dev_upstream, last_used_flush_seconds=3600)
    )
    updates = _count_key_updates(app.runtime.engine)
    with ServedApp(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        tenant = client.post("/admin/tenants", json={"name": f"busy-{uuid.uuid4().hex[:8]}"}, headers=admin).json()
        key = client.post(f"/admin/tenants/{tenant['id']}/keys", json={}, headers=admin).json()
        for _ in range(30):
            assert client.get("/v1/models", headers={"Authorization": f"Bearer {key['key']}"}).status_code == 200
        assert updates == []
        assert client.get(f"/admin/keys/{key['id']}", headers=admin).json()["last_used_at"] is None
    assert len(updates) == 1  # the lifespan flushed once at shutdown

    async def read() -> datetime | None:
        engine = database.create_engine(database_url)
        try:
            return (await _last_used(database.create_sessionmaker(engine), [key["id"]]))[key["id"]]
        finally:
            await engine.dispose()

    assert asyncio.run(read()) is not None


def test_periodic_flush_shows_last_use(gateway_factory: Any, database_url: str, dev_upstream: str) -> None:
    gateway = gateway_factory(database_url=database_url, upstream_base_url=dev_upstream, last_used_flush_seconds=0.2)
    key = gateway.new_key()
    assert gateway.client(key["key"]).models.list().data
    deadline = time.monotonic() + 5
    while gateway.admin("GET", f"/admin/keys/{key['id']}").json()["last_used_at"] is None:
        assert time.monotonic() < deadline, "last_used_at was never written"
        time.sleep(0.1)
