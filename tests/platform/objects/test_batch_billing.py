"""Money: a batch of lines across two models is billed exactly once per line, at batch prices, to the key that
created it, however often it is retrieved, across a gateway restart while it runs and a SIGKILL of the worker; a
background response nobody retrieves is billed too. Real Postgres and Redis; the official SDK as the client."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import text

from tenantgate import database
from tenantgate.platform.app import create_app
from tenantgate.platform.serving import uvicorn_options
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, UPSTREAM_KEY, make_settings
from tests.platform.objects.batching import (
    batch_cost,
    create,
    output_usage,
    two_model_lines,
    upload_input,
    wait_ended,
    wait_until,
)
from tests.support.gateway import Gateway
from tests.support.metering import all_events, flush
from tests.support.process import ServeProcess
from tests.support.server import ServedApp

LINES = 10


def _usage(gateway: Gateway, key: str, **params: Any) -> list[dict[str, Any]]:
    query = {"start_time": int(time.time()) - 3 * 86400, "bucket_width": "1d", "limit": 7, **params}
    response = gateway.http.get(
        gateway.url + "/v1/organization/usage/completions", params=query, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    return [result for bucket in response.json()["data"] for result in bucket["results"]]


def _billed(gateway: Gateway, key: str) -> list[dict[str, Any]]:
    """What the Usage API shows once everything spooled so far is written."""
    flush(gateway)
    return _usage(gateway, key)


def _costs(gateway: Gateway, key: str) -> Decimal:
    query = {"start_time": int(time.time()) - 3 * 86400, "limit": 7}
    response = gateway.http.get(
        gateway.url + "/v1/organization/costs", params=query, headers={"Authorization": f"Bearer {key}"}
    )
    return sum((Decimal(str(r["amount"]["value"])) for b in response.json()["data"] for r in b["results"]), Decimal(0))


def assert_billed_once(gateway: Gateway, key: dict[str, Any], used: dict[str, dict[str, int]]) -> None:
    """The Usage and Costs APIs show exactly the output file's usage, as batch work of the creating key."""
    results = _usage(gateway, key["key"], group_by=["model", "batch", "api_key_id"])
    shown = {r["model"]: r for r in results}
    assert set(shown) == set(used)
    for model, entry in used.items():
        result = shown[model]
        assert (result["num_model_requests"], result["input_tokens"], result["output_tokens"]) == (
            entry["lines"],
            entry["input"],
            entry["output"],
        ), model
        assert result["batch"] is True
        assert result["api_key_id"] == key["id"]
    assert _usage(gateway, key["key"], batch="false") == []
    assert _costs(gateway, key["key"]) == pytest.approx(batch_cost(used), abs=Decimal("1e-9"))


def test_a_batch_is_billed_once_per_line_at_batch_prices(
    objects_gateway: Callable[..., Gateway], postgres_url: str
) -> None:
    gateway = objects_gateway()
    key = gateway.new_key("billed")
    client = gateway.client(key["key"])
    batch = wait_ended(client, create(client, upload_input(client, two_model_lines(LINES))).id)
    assert batch.output_file_id is not None
    used = output_usage(client, batch.output_file_id)
    assert sum(m["lines"] for m in used.values()) == LINES and len(used) == 2
    for _ in range(5):
        assert client.batches.retrieve(batch.id).status == "completed"
    wait_until(lambda: _billed(gateway, key["key"]), what="the batch's usage")
    # As if the process that metered it had died before claiming it settled: the poller meters it all again.
    _unsettle(postgres_url, batch.id)
    wait_until(lambda: _settled(postgres_url, batch.id), what="the poller to settle the batch again")
    flush(gateway)
    events = [e for e in all_events(gateway) if e["tenant_id"] == key["tenant_id"] and e["billable"]]
    assert len(events) == LINES and len({e["id"] for e in events}) == LINES
    assert_billed_once(gateway, key, used)


@pytest.fixture
def served(
    postgres_url: str, redis_url: str, redis_prefix: str, fast_upstream: str, tmp_path: Path
) -> Iterator[Callable[..., tuple[Gateway, ServedApp]]]:
    """Gateways that a test can stop (a restart), on one database, Redis prefix and spool directory."""
    started: list[ServedApp] = []

    def start(**overrides: Any) -> tuple[Gateway, ServedApp]:
        settings = make_settings(
            database_url=postgres_url,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            upstream_base_url=fast_upstream,
            object_poll_seconds=0.5,
            metering_flush_interval_seconds=0.2,
            spool_dir=tmp_path / "spool",
            **overrides,
        )
        app = create_app(settings)
        server = ServedApp(app, **uvicorn_options(settings)).__enter__()
        started.append(server)
        gateway = Gateway(server.url, ADMIN_TOKEN, settings, app.runtime, server.loop)  # type: ignore[arg-type]
        return gateway, server

    yield start
    for server in reversed(started):
        server.__exit__(None, None, None)


def test_a_batch_that_ends_while_the_gateway_is_down_is_billed_once_when_it_is_back(
    served: Callable[..., tuple[Gateway, ServedApp]],
) -> None:
    first, server = served()
    key = first.new_key("restart")
    client = first.client(key["key"])
    batch = create(client, upload_input(client, two_model_lines(LINES)), metadata={"dev_seconds": "2"})
    server.__exit__(None, None, None)  # stopped while the batch runs; nobody retrieves it afterwards
    time.sleep(2.5)
    second, _ = served()
    again = second.client(key["key"])
    wait_until(lambda: _billed(second, key["key"]), what="the poller to bill the batch")
    ended = again.batches.retrieve(batch.id)
    assert ended.status == "completed" and ended.output_file_id is not None
    flush(second)
    assert_billed_once(second, key, output_usage(again, ended.output_file_id))


def _settled(url: str, batch_id: str) -> bool:
    async def read() -> bool:
        engine = database.create_engine(url)
        try:
            async with engine.connect() as conn:
                row = await conn.execute(
                    text("SELECT settled_at IS NOT NULL FROM tenant_objects WHERE id = :id"), {"id": batch_id}
                )
                return bool(row.scalar())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _unsettle(url: str, batch_id: str) -> None:
    async def write() -> None:
        engine = database.create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE tenant_objects SET settled_at = NULL, poll_at = now() WHERE id = :id"),
                    {"id": batch_id},
                )
        finally:
            await engine.dispose()

    asyncio.run(write())


def _stored_batch_events(url: str) -> int:
    async def read() -> int:
        engine = database.create_engine(url)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(text("SELECT count(*) FROM usage_events WHERE batch"))).scalar() or 0)
        finally:
            await engine.dispose()

    return asyncio.run(read())


@pytest.mark.slow  # starts processes: `-m 'not slow'` skips it for a quick loop
@pytest.mark.parametrize("moment", ["while it runs", "after it was settled, before its usage was written"])
def test_a_sigkilled_worker_bills_a_batch_once(
    postgres_url: str, redis_url: str, redis_prefix: str, fast_upstream: str, tmp_path: Path, moment: str
) -> None:
    env = {
        "TENANTGATE_DATABASE_URL": postgres_url,
        "TENANTGATE_REDIS_URL": redis_url,
        "TENANTGATE_REDIS_PREFIX": redis_prefix,
        "TENANTGATE_SECRET_KEY": SECRET_KEY,
        "TENANTGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TENANTGATE_UPSTREAM_BASE_URL": fast_upstream,
        "TENANTGATE_UPSTREAM_API_KEY": UPSTREAM_KEY,
        "TENANTGATE_SPOOL_DIR": str(tmp_path / "spool"),
        "TENANTGATE_OBJECT_POLL_SECONDS": "0.5",
        # The first process writes no usage before it is killed: what it metered reaches the database only by
        # the next process replaying its spool.
        "TENANTGATE_METERING_FLUSH_INTERVAL_SECONDS": "3600",
        "TENANTGATE_INTERPRETER_TUNING": "false",
        "TENANTGATE_LOG_LEVEL": "warning",
    }
    first = ServeProcess(env).wait_ready()
    try:
        gateway = Gateway(first.url, ADMIN_TOKEN, make_settings())
        key = gateway.new_key("killed")
        client = openai.OpenAI(base_url=first.url + "/v1", api_key=key["key"], max_retries=0)
        seconds = "3" if moment == "while it runs" else "0.5"
        batch = create(client, upload_input(client, two_model_lines(LINES)), metadata={"dev_seconds": seconds})
        if moment != "while it runs":
            wait_until(lambda: _settled(postgres_url, batch.id), what="the first process to settle the batch")
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        first.stop()
    assert _stored_batch_events(postgres_url) == 0
    if moment == "while it runs":
        time.sleep(3)
    env["TENANTGATE_METERING_FLUSH_INTERVAL_SECONDS"] = "0.2"
    second = ServeProcess(env).wait_ready()
    try:
        gateway = Gateway(second.url, ADMIN_TOKEN, make_settings())
        client = openai.OpenAI(base_url=second.url + "/v1", api_key=key["key"], max_retries=0)
        wait_until(lambda: _stored_batch_events(postgres_url) >= LINES, timeout=60, what="the batch's usage")
        for _ in range(3):
            ended = client.batches.retrieve(batch.id)
        time.sleep(1.5)  # what a retrieve or the poller would add, it would have added by now
        assert ended.output_file_id is not None
        assert _stored_batch_events(postgres_url) == LINES
        assert_billed_once(gateway, key, output_usage(client, ended.output_file_id))
    finally:
        second.stop()


def test_a_background_response_nobody_retrieves_is_billed(objects_gateway: Callable[..., Gateway]) -> None:
    gateway = objects_gateway()
    key = gateway.new_key("background")
    client = gateway.client(key["key"])
    tools: Any = [{"type": "web_search"}, {"type": "code_interpreter", "container": {"type": "auto"}}]
    created = client.responses.create(model="gpt-4o-mini", input="think about it", background=True, tools=tools)
    assert created.status in ("queued", "in_progress")
    billed = wait_until(lambda: _billed(gateway, key["key"]), what="the poller to bill it")
    assert [(r["num_model_requests"], r["batch"]) for r in billed] == [(1, None)]
    events = [e for e in all_events(gateway) if e["tenant_id"] == key["tenant_id"] and e["billable"]]
    assert len(events) == 1 and events[0]["api_key_id"] == key["id"] and events[0]["input_tokens"] > 0
    # Its hosted tools are billed as on a retrieve: one search call, one container session.
    assert (events[0]["web_search_calls"], events[0]["code_interpreter_sessions"]) == (1, 1)
    # Retrieved afterwards, it is the same event (the store keeps it once).
    assert client.responses.retrieve(created.id).status == "completed"
    flush(gateway)
    assert len([e for e in all_events(gateway) if e["tenant_id"] == key["tenant_id"] and e["billable"]]) == 1
