"""Revocation, suspension and limit changes reach every server process within a second, not at cache expiry:
through Redis pub/sub between nodes, and on one node without Redis (``serve --workers 2`` on SQLite) through
the database's invalidation log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from tenantgate import database
from tenantgate.cli import app as cli
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, UPSTREAM_KEY, _create_pg_database, make_settings
from tests.support.gateway import Gateway
from tests.support.process import ServeProcess
from tests.support.services import own_redis_prefix

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop


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


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory, dev_upstream: str) -> Iterator[tuple[ServeProcess, Gateway]]:
    """``serve --workers 2`` on SQLite, without Redis: the single-node setup (started once for the module)."""
    directory: Path = tmp_path_factory.mktemp("one-node")
    env = {
        "TENANTGATE_ENV": "production",
        "TENANTGATE_DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'tenantgate.db'}",
        "TENANTGATE_REDIS_URL": "",
        "TENANTGATE_SECRET_KEY": SECRET_KEY,
        "TENANTGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TENANTGATE_UPSTREAM_BASE_URL": dev_upstream,
        "TENANTGATE_UPSTREAM_API_KEY": UPSTREAM_KEY,
        "TENANTGATE_KEY_CACHE_TTL_SECONDS": "30",  # far longer than the 1 s we allow
        "TENANTGATE_SPOOL_DIR": str(directory / "spool"),
        "TENANTGATE_LOG_LEVEL": "warning",
    }
    server = ServeProcess(env, "--workers", "2")
    try:
        server.wait_ready(timeout=90)
        yield (
            server,
            Gateway(
                url=server.url,
                admin_token=ADMIN_TOKEN,
                settings=make_settings(database_url=env["TENANTGATE_DATABASE_URL"]),
            ),
        )
    finally:
        server.stop()


def _client_per_worker(server: ServeProcess, gateway: Gateway, key: str) -> list[openai.OpenAI]:
    """An SDK client per worker (of 2), each on one kept-alive connection that worker accepted; each worker has
    resolved and cached ``key`` by then."""
    clients: dict[int, openai.OpenAI] = {}
    deadline = time.monotonic() + 30
    while len(clients) < 2:
        assert time.monotonic() < deadline, f"connections reached only the workers {sorted(clients)}"
        client = gateway.client(key, http_client=httpx.Client(limits=httpx.Limits(max_connections=1)))
        answer = client.models.with_raw_response.list()
        connection = answer.http_response.extensions["network_stream"].get_extra_info("socket")
        worker = server.worker_serving(connection.getsockname()[1])
        if worker is None or worker in clients:
            client.close()
        else:
            clients[worker] = client
    return list(clients.values())


def _cli(env: dict[str, str], *args: str) -> float:
    """Run a CLI command as a user would (in process, against the node's database); when it returned."""
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return time.monotonic()


def _within_1s_on_each(clients: list[openai.OpenAI], since: float, check: Callable[[openai.OpenAI], bool]) -> None:
    for client in clients:
        while not check(client):
            assert time.monotonic() - since < 1.0, "a worker still answers as before the change"
            time.sleep(0.02)


def _env_of(gateway: Gateway) -> dict[str, str]:
    return {
        "TENANTGATE_ENV": "production",
        "TENANTGATE_DATABASE_URL": gateway.settings.database_url,
        "TENANTGATE_REDIS_URL": "",
        "TENANTGATE_SECRET_KEY": SECRET_KEY,
    }


def test_without_redis_a_cli_revoke_is_refused_by_both_workers_within_1s(
    one_node: tuple[ServeProcess, Gateway],
) -> None:
    server, gateway = one_node
    key = gateway.new_key()
    clients = _client_per_worker(server, gateway, key["key"])
    revoked = _cli(_env_of(gateway), "keys", "revoke", key["id"])
    _within_1s_on_each(clients, revoked, _refused_by(openai.AuthenticationError))


def test_without_redis_suspend_and_resume_through_one_worker_reach_both_within_1s(
    one_node: tuple[ServeProcess, Gateway],
) -> None:
    server, gateway = one_node
    key = gateway.new_key()
    clients = _client_per_worker(server, gateway, key["key"])
    assert gateway.admin("POST", f"/admin/tenants/{key['tenant_id']}/suspend").status_code == 200
    _within_1s_on_each(clients, time.monotonic(), _refused_by(openai.PermissionDeniedError))
    assert gateway.admin("POST", f"/admin/tenants/{key['tenant_id']}/resume").status_code == 200
    _within_1s_on_each(clients, time.monotonic(), lambda client: not _refused_by(openai.PermissionDeniedError)(client))


def test_without_redis_a_cli_limit_change_reaches_both_workers_within_1s(
    one_node: tuple[ServeProcess, Gateway],
) -> None:
    server, gateway = one_node
    key = gateway.new_key()
    clients = _client_per_worker(server, gateway, key["key"])
    assert all(len(client.models.list().data) > 1 for client in clients)
    changed = _cli(_env_of(gateway), "keys", "update", key["id"], "--model", "gpt-4o")
    _within_1s_on_each(clients, changed, lambda client: [m.id for m in client.models.list().data] == ["gpt-4o"])


def _refused_by(error: type[Exception]) -> Callable[[openai.OpenAI], bool]:
    def check(client: openai.OpenAI) -> bool:
        return _refused(client, error)()

    return check
