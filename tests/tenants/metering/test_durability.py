"""Nothing lost, nothing doubled: the database going away under load, and a server SIGKILLed under load.

Both run real servers and real clients (the official SDK); each takes a few seconds of load, not more.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tenantgate import database
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, UPSTREAM_KEY
from tests.support.databases import migrated_sqlite_url
from tests.support.gateway import Gateway
from tests.support.load import Load
from tests.support.metering import all_events, flush
from tests.support.pg_instance import PostgresInstance
from tests.support.services import free_port

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop


@pytest.fixture
def own_postgres() -> Iterator[PostgresInstance]:
    instance = PostgresInstance()
    try:
        yield instance
    finally:
        instance.destroy()


def _wait_for_events(gateway: Gateway, tenant_id: str, count: int, timeout: float = 40) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            flush(gateway)
            events = all_events(gateway, tenant_id=tenant_id)
        except Exception:
            time.sleep(0.5)  # the writer may still be in its backoff after the outage
            continue
        if len(events) >= count:
            return events
        time.sleep(0.2)
    return events


def test_postgres_down_under_load_then_back_every_event_once(
    gateway_factory: Any, own_postgres: PostgresInstance, dev_upstream: str
) -> None:
    url = asyncio.run(own_postgres.create_database(f"tg_{uuid.uuid4().hex[:8]}"))
    database.upgrade(url)
    gateway = gateway_factory(
        database_url=url,
        upstream_base_url=dev_upstream,
        metering_flush_interval_seconds=0.1,
        key_cache_ttl_seconds=600,  # the proxy path needs no database once the key is cached
    )
    created = gateway.new_key("outage")
    load = Load(gateway.base_url, created["key"], threads=3).start()
    load.wait_for(30)
    own_postgres.stop()
    during_outage = len(load.received)
    writer = gateway.runtime.metering.writer
    deadline = time.monotonic() + 30
    while writer.failures == 0 and time.monotonic() < deadline:  # a flush (every 0.1 s) found the database gone
        time.sleep(0.05)
    assert load.wait_for(during_outage + 30) > during_outage + 10, (
        "the gateway kept serving while the database was down"
    )
    assert writer.failures > 0, "the writer noticed the outage"
    own_postgres.start()
    load.wait_for(len(load.received) + 30)
    received = load.stop()
    assert load.errors == 0

    events = _wait_for_events(gateway, created["tenant_id"], len(received))
    counts = Counter(e["request_id"] for e in events)
    assert len(events) == len(received) == len(counts), "one event per response, no more, no less"
    assert set(counts) == set(received)
    usage = gateway.admin(
        "GET",
        "/v1/organization/usage/completions",
        params={"start_time": int(time.time()) - 600, "project_ids[]": created["tenant_id"]},
    ).json()
    assert sum(r["num_model_requests"] for b in usage["data"] for r in b["results"]) == len(received)


def _serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantgate", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=1) as probe:  # one client for every probe (a new one costs ~30 ms of CPU)
        while time.monotonic() < deadline:
            assert process.poll() is None, "server exited during startup"
            try:
                if probe.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    return process
            except httpx.HTTPError:
                time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not start")


@pytest.mark.parametrize(
    ("backend", "first_interval"),
    [
        ("sqlite", "3600"),  # nothing reaches the database before the kill: all of it comes from the spool
        ("postgres", "3600"),
        ("postgres", "0.05"),  # killed while batches commit: replays overlap what is already stored
    ],
)
def test_sigkill_under_load_then_restart_every_received_response_once(
    request: pytest.FixtureRequest, tmp_path: Path, dev_upstream: str, backend: str, first_interval: str
) -> None:
    if backend == "sqlite":
        url = migrated_sqlite_url(tmp_path / "gateway.db")
    else:
        url = request.getfixturevalue("postgres_url")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTGATE_") and k != "OPENAI_API_KEY"}
    env.update(
        TENANTGATE_DATABASE_URL=url,
        TENANTGATE_SECRET_KEY=SECRET_KEY,
        TENANTGATE_ADMIN_TOKEN=ADMIN_TOKEN,
        TENANTGATE_UPSTREAM_BASE_URL=dev_upstream,
        TENANTGATE_UPSTREAM_API_KEY=UPSTREAM_KEY,
        TENANTGATE_SPOOL_DIR=str(tmp_path / "spool"),
        TENANTGATE_MIGRATE_ON_START="false",
        TENANTGATE_METERING_FLUSH_INTERVAL_SECONDS=first_interval,
        TENANTGATE_METERING_BATCH_SIZE="100000",
        TENANTGATE_LOG_LEVEL="warning",
    )
    server = _serve(env, port)
    try:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        tenant = httpx.post(base + "/admin/tenants", json={"name": f"kill-{port}"}, headers=admin).json()
        key = httpx.post(base + f"/admin/tenants/{tenant['id']}/keys", json={}, headers=admin).json()
        load = Load(base + "/v1", key["key"], threads=4).start()
        load.wait_for(60)  # well under way (0.2-0.4 s here), and with a 0.05 s interval, batches committed meanwhile
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        first = load.stop()
    finally:
        if server.poll() is None:
            server.kill()
    assert len(first) > 20, "the server was under load when it was killed"
    if first_interval == "3600":
        stored = asyncio.run(_count_events(url))
        assert stored == 0, "nothing was written before the kill, so what follows proves the spool replay"

    # Restart on the same spool: the new process adopts the dead one's segment. It never flushes on its own
    # (interval of an hour), so its own requests reach the database only through the flush on SIGTERM.
    env["TENANTGATE_METERING_FLUSH_INTERVAL_SECONDS"] = "3600"
    server = _serve(env, port)
    try:
        second = Load(base + "/v1", key["key"], threads=2).start()
        second.wait_for(20)
        received = first + second.stop()
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully (lifespan included), then re-raises the signal it caught.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()

    request_ids = asyncio.run(_request_ids(url, tenant["id"]))
    counts = Counter(request_ids)
    assert max(counts.values()) == 1, "no event stored twice"
    missing = set(received) - set(counts)
    assert not missing, f"{len(missing)} of {len(received)} received responses have no usage event"
    # Responses cut off by the kill may have been metered (settled) without the client seeing their end.
    assert len(request_ids) - len(received) <= 4
    assert list((tmp_path / "spool").glob("seg-*.spool")) == [], "the spool was drained and removed"


async def _count_events(url: str) -> int:
    return len(await _request_ids(url, None))


async def _request_ids(url: str, tenant_id: str | None) -> list[str]:
    engine = database.create_engine(url)
    try:
        async with engine.connect() as conn:
            if tenant_id is None:
                rows = await conn.execute(text("SELECT request_id FROM usage_events"))
            else:
                rows = await conn.execute(
                    text("SELECT request_id FROM usage_events WHERE tenant_id = :tenant"), {"tenant": tenant_id}
                )
            return [row[0] for row in rows]
    finally:
        await engine.dispose()
