"""The dev setup ``serve`` makes with TENANTGATE_ENV=dev: made once, kept beside the database, read by the CLI only."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from tenantgate import database
from tenantgate.cli import app
from tenantgate.commands import devsetup
from tenantgate.commands.common import with_session
from tenantgate.settings import Settings
from tenantgate.tenants import admin_tokens
from tests.conftest import make_settings


def _dev(database_url: str, admin_token: str | None = None) -> Settings:
    return make_settings(env="dev", admin_token=admin_token, database_url=database_url)


async def _tokens(settings: Settings) -> list[str]:
    async def names(session: AsyncSession) -> list[str]:
        page = await admin_tokens.list_tokens(session, limit=100)
        return [token.name for token in page.items if token.revoked_at is None]

    return await with_session(settings, names)


async def test_made_once_kept_beside_the_database_and_remade_for_a_new_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tenantgate.db'}"
    await database.upgrade_async(url)
    settings = _dev(url)

    first = await devsetup.prepare(settings)
    assert first.file == tmp_path / "tenantgate.dev.env"
    assert stat.S_IMODE(first.file.stat().st_mode) == 0o600
    assert first.admin_token is not None and first.admin_token.startswith("tga-")
    assert first.demo_key is not None and first.demo_key.startswith("tg-")
    assert len(first.news) == 2
    kept = first.file.read_text()
    assert "TENANTGATE_ENV=dev\n" in kept and first.admin_token in kept and first.demo_key in kept

    again = await devsetup.prepare(settings)
    assert (again.admin_token, again.demo_key, again.news) == (first.admin_token, first.demo_key, [])
    assert await _tokens(settings) == ["dev"]  # not one more per start

    text = devsetup.summary(again, settings, "0.0.0.0", 8080)
    for shown in (
        f"admin token      {first.admin_token}",
        f"demo API key     {first.demo_key}",
        "OpenAI base_url  http://127.0.0.1:8080/v1",
        "console          http://127.0.0.1:8080/console",
        "API docs         http://127.0.0.1:8080/docs",
        "metrics          http://127.0.0.1:8080/metrics  (admin token)",
        "usage API        http://127.0.0.1:8080/v1/organization/usage/completions",
    ):
        assert shown in text, text

    # The database made again from nothing: the kept token opens nothing there, so a new one is made.
    (tmp_path / "tenantgate.db").unlink()
    await database.upgrade_async(url)
    remade = await devsetup.prepare(settings)
    assert remade.admin_token not in (None, first.admin_token)
    assert remade.admin_token is not None and remade.admin_token in remade.file.read_text()  # type: ignore[union-attr]


async def test_a_configured_admin_token_is_used_and_none_is_made(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tenantgate.db'}"
    await database.upgrade_async(url)
    settings = _dev(url, admin_token="my-own-admin-token-0123456789")
    setup = await devsetup.prepare(settings)
    assert setup.admin_token is None and await _tokens(settings) == []
    text = devsetup.summary(setup, settings, "127.0.0.1", 8080)
    assert "admin token      the one in TENANTGATE_ADMIN_TOKEN" in text
    assert "my-own-admin-token" not in text


async def test_a_database_that_is_not_a_file_gets_its_token_once(postgres_url: str) -> None:
    settings = _dev(postgres_url)
    first = await devsetup.prepare(settings)
    assert first.file is None and first.admin_token is not None
    again = await devsetup.prepare(settings)
    assert again.admin_token is None and again.news == [] and await _tokens(settings) == ["dev"]
    assert "admin token      shown when it was made" in devsetup.summary(again, settings, "127.0.0.1", 8080)


@pytest.fixture
def dev_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory where ``serve`` made its dev setup, as the working directory; no TENANTGATE_* set."""
    for name in [n for n in os.environ if n.startswith("TENANTGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    database.upgrade("sqlite+aiosqlite:///./tenantgate.db")
    (tmp_path / "tenantgate.dev.env").write_text("TENANTGATE_ENV=dev\n")
    return tmp_path


def test_the_cli_works_on_the_dev_database_with_no_variables(dev_directory: Path) -> None:
    result = CliRunner().invoke(app, ["tenants", "create", "--name", "mine", "--json"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "env",
    [
        {"TENANTGATE_ENV": "production"},  # said explicitly: the file does not overrule it
        {"TENANTGATE_DATABASE_URL": "sqlite+aiosqlite:///./elsewhere/other.db"},  # no dev setup beside that one
    ],
)
def test_the_default_secret_is_still_refused_outside_the_dev_setup(dev_directory: Path, env: dict[str, str]) -> None:
    (dev_directory / "elsewhere").mkdir()
    result = CliRunner().invoke(app, ["tenants", "list"], env=env)
    assert result.exit_code == 2
    assert "TENANTGATE_SECRET_KEY is unset or the built-in default" in result.stderr


def test_a_server_is_never_put_in_dev_mode_by_the_file(dev_directory: Path) -> None:
    with socket.socket() as busy:  # were the settings accepted, serve would stop at the port, not start
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = CliRunner().invoke(app, ["serve", "--port", str(busy.getsockname()[1])])
    assert result.exit_code == 2
    assert "TENANTGATE_SECRET_KEY is unset or the built-in default" in result.stderr
    assert Settings.for_command().env == "dev"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_dev_database_and_its_wal_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "tenantgate.db"
    url = f"sqlite+aiosqlite:///{db}"
    settings = _dev(url)
    previous = os.umask(0o022)  # the usual umask: files are made world-readable unless made otherwise
    try:
        devsetup.private_database(settings)  # what `serve` does first in dev mode
        asyncio.run(database.upgrade_async(url))
        asyncio.run(devsetup.prepare(settings))
        with closing(sqlite3.connect(db)) as open_db:  # a server's connection: WAL, with its -wal and -shm
            open_db.execute("PRAGMA journal_mode=WAL")
            open_db.execute("CREATE TABLE scratch (x)")
            open_db.commit()
            made = sorted(path for path in tmp_path.iterdir() if path.name.startswith("tenantgate.db"))
            assert [path.name for path in made] == ["tenantgate.db", "tenantgate.db-shm", "tenantgate.db-wal"]
            assert [_mode(path) for path in made] == [0o600] * 3

            # A dev database made before (world-readable) is tightened on the next start, and still opens.
            for path in made:
                path.chmod(0o644)
            devsetup.private_database(settings)
            assert [_mode(path) for path in made] == [0o600] * 3
        assert asyncio.run(devsetup.prepare(settings)).news == []
    finally:
        os.umask(previous)


def test_a_database_that_is_not_a_sqlite_file_is_left_alone(tmp_path: Path) -> None:
    devsetup.private_database(_dev("postgresql+asyncpg://postgres@127.0.0.1:5432/nothing_here"))
    devsetup.private_database(_dev("sqlite+aiosqlite:///:memory:"))
    assert list(tmp_path.iterdir()) == []
