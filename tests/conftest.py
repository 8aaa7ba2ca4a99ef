"""Shared fixtures: real databases (SQLite and Postgres), the dev upstream, and a served gateway."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantgate import tokens
from tenantgate.devupstream import DevUpstream
from tenantgate.platform.app import create_app
from tenantgate.platform.serving import uvicorn_options
from tenantgate.settings import Settings
from tests.support import client_tls, databases, scheduling
from tests.support.gateway import Gateway
from tests.support.server import ServedApp
from tests.support.services import own_redis_prefix, postgres_server_url, redis_server_url

ADMIN_TOKEN = "test-admin-token-0123456789"
SECRET_KEY = "test-secret-key-0123456789abcdef"
UPSTREAM_KEY = "sk-upstream-test-key"


def pytest_configure(config: pytest.Config) -> None:
    scheduling.start(config)
    client_tls.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        scheduling.finish()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order and group the run for several processes (scripts/test: ``-n 4 --dist loadgroup``); no test changes.

    - A module's tests that share a module-scoped fixture (two gateway processes, a browser, a populated world) go
      to one process, where the fixture is set up once (tests/support/scheduling.py).
    - Modules with a slow suite (marked ``slow``), then modules with property tests, are handed out before the rest:
      started last, a test of half a minute would leave the other processes idle at the end of the run. Whole
      modules move, never a test within its module (some modules' tests share state in that order).
    """

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow") is not None:
            return 0
        return 1 if getattr(getattr(item, "obj", None), "is_hypothesis_test", False) else 2

    module_rank: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        module_rank[module] = min(module_rank.get(module, 2), rank(item))
    items.sort(key=lambda item: module_rank[item.nodeid.split("::", 1)[0]])  # stable: each module keeps its order
    scheduling.write(config, items)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collecting made (the imported modules, the test items: 270k objects) lives as long as the process:
    frozen out of the garbage collector's reach, each full collection of a test process walks half the objects it
    did (a subset of the suite: 40 s of CPU against 43 s)."""
    gc.collect()
    gc.freeze()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return scheduling.make_scheduler(config, log)


@pytest.fixture(scope="session", autouse=True)
def _tokenizers_loaded() -> None:
    """Servers load tokenizers lazily in the background; tests want exact estimates from the first request."""
    tokens.warm_up()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    return postgres_server_url()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return redis_server_url()


@pytest.fixture
def own_redis_url() -> Iterator[str]:
    """A Redis server of the test's own, for a test that changes what the whole server holds (``SCRIPT FLUSH``):
    on the shared one, another test process's script call could be flushed twice between its load and its retry."""
    from tests.platform.limits.processes import RedisProcess

    redis = RedisProcess()
    try:
        yield redis.url
    finally:
        redis.kill()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    with own_redis_prefix(redis_url) as prefix:
        yield prefix


def _create_pg_database(server: str) -> tuple[str, Callable[[], None]]:
    """An empty (not migrated) database: for tests that run the migrations themselves."""
    return databases.new_postgres_database(server, migrated=False)


@pytest.fixture(scope="session", autouse=True)
def _databases_dropped() -> Iterator[None]:
    yield
    databases.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database on each backend."""
    if request.param == "sqlite":
        yield databases.migrated_sqlite_url(tmp_path / "tenantgate.db")
        return
    url, drop = databases.new_postgres_database(request.getfixturevalue("postgres_server"))
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh, migrated SQLite database (for tests whose subject is not storage)."""
    return databases.migrated_sqlite_url(tmp_path / "tenantgate.db")


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    url, drop = databases.new_postgres_database(postgres_server)
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="session")
def dev_upstream() -> Iterator[str]:
    with ServedApp(DevUpstream(api_key=UPSTREAM_KEY), lifespan="off") as served:
        yield served.url + "/v1"


@pytest.fixture(scope="session")
def slow_dev_upstream() -> Iterator[str]:
    """A dev upstream that waits 50 ms before each token."""
    with ServedApp(DevUpstream(token_delay_ms=50, api_key=UPSTREAM_KEY), lifespan="off") as served:
        yield served.url + "/v1"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "production",
        "secret_key": SECRET_KEY,
        "admin_token": ADMIN_TOKEN,
        "upstream_api_key": UPSTREAM_KEY,
        # One pytest process starts hundreds of apps: freezing each one's heap would keep every earlier test's
        # garbage for good. tests/platform/test_interpreter.py covers the setting.
        "interpreter_tuning": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Start a gateway served on a loopback port with the given settings overrides."""
    started: list[ServedApp] = []

    def start(**overrides: Any) -> Gateway:
        overrides.setdefault("spool_dir", tmp_path / f"spool-{len(started)}")
        settings = make_settings(**overrides)
        app = create_app(settings)
        served = ServedApp(app, **uvicorn_options(settings)).__enter__()
        started.append(served)
        assert served.loop is not None
        return Gateway(
            url=served.url, admin_token=ADMIN_TOKEN, settings=settings, runtime=app.runtime, loop=served.loop
        )

    yield start
    for served in reversed(started):
        served.__exit__(None, None, None)


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], database_url: str, dev_upstream: str) -> Gateway:
    return gateway_factory(database_url=database_url, upstream_base_url=dev_upstream)
