"""Revocation and suspension reach every server process within a second (Redis pub/sub), not at cache expiry."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import openai
import pytest
from typer.testing import CliRunner

from tenantgate import database
from tenantgate.cli import app as cli
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, UPSTREAM_KEY, _create_pg_database, make_settings
from tests.support.gateway import Gateway
from tests.support.process import ServeProcess
from tests.support.services import own_redis_prefix


@pytest.fixture(scope="module")
def shared_env(postgres_server: str, redis_url: str, dev_upstream: str) -> Iterator[dict[str, str]]:
    """One Postgres database and Redis prefix for two servers (started once for the module: it takes seconds)."""
    url, drop = _create_pg_database(postgres_server)
    database.upgrade(url)
    with own_redis_prefix(redis_url) as redis_prefix:
        yield {
            "TENANTGATE_ENV": "production",
            "TENANTGATE_DATABASE_URL": url,
            "TENANTGATE_REDIS_URL": redis_url,
            "TENANTGATE_REDIS_PREFIX": redis_prefix,
            "TENANTGATE_SECRET_KEY": SECRET_KEY,
            "TENANTGATE_ADMIN_TOKEN": ADMIN_TOKEN,
            "TENANTGATE_UPSTREAM_BASE_URL": dev_upstream,
            "TENANTGATE_UPSTREAM_API_KEY": UPSTREAM_KEY,
            "TENANTGATE_MIGRATE_ON_START": "false",
            "TENANTGATE_KEY_CACHE_TTL_SECONDS": "30",  # far longer than the 1 s we allow
            "TENANTGATE_LOG_LEVEL": "warning",
        }
    drop()


@pytest.fixture(scope="module")
def two_servers(shared_env: dict[str, str]) -> Iterator[tuple[Gateway, Gateway]]:
    processes = [ServeProcess(shared_env), ServeProcess(shared_env)]
    try:
        settings = make_settings(database_url=shared_env["TENANTGATE_DATABASE_URL"])
        yield tuple(  # type: ignore[misc]
            Gateway(url=p.wait_ready().url, admin_token=ADMIN_TOKEN, settings=settings) for p in processes
        )
    finally:
        for process in processes:
            process.stop()


def _seconds_until(check: Callable[[], bool], limit: float = 5.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > limit:
            return float("inf")
        time.sleep(0.02)
    return time.monotonic() - started


def _refused(client: openai.OpenAI, error: type[Exception]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            client.models.list()
        except error:
            return True
        return False

    return check


def test_revoke_through_one_process_is_refused_by_the_other_within_1s(two_servers: tuple[Gateway, Gateway]) -> None:
    a, b = two_servers
    key = a.new_key()
    on_b = b.client(key["key"])
    assert on_b.models.list().data and on_b.models.list().data  # resolved and cached by b
    assert a.admin("POST", f"/admin/keys/{key['id']}/revoke").status_code == 200
    assert _seconds_until(_refused(on_b, openai.AuthenticationError)) < 1.0


def test_suspend_and_resume_reach_the_other_process_within_1s(two_servers: tuple[Gateway, Gateway]) -> None:
    a, b = two_servers
    key = a.new_key()
    on_b = b.client(key["key"])
    assert on_b.models.list().data
    a.admin("POST", f"/admin/tenants/{key['tenant_id']}/suspend")
    assert _seconds_until(_refused(on_b, openai.PermissionDeniedError)) < 1.0
    a.admin("POST", f"/admin/tenants/{key['tenant_id']}/resume")
    assert _seconds_until(lambda: not _refused(on_b, openai.PermissionDeniedError)()) < 1.0


def test_cli_revoke_reaches_running_servers_within_1s(
    two_servers: tuple[Gateway, Gateway], shared_env: dict[str, str]
) -> None:
    a, b = two_servers
    key = a.new_key()
    clients = [a.client(key["key"]), b.client(key["key"])]
    assert all(client.models.list().data for client in clients)
    result = CliRunner().invoke(cli, ["keys", "revoke", key["id"], "--json"], env=shared_env)
    assert result.exit_code == 0, result.output
    for client in clients:
        assert _seconds_until(_refused(client, openai.AuthenticationError)) < 1.0
