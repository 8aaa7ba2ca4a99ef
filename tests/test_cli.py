"""The CLI: --json output contracts, and `serve` on a fresh directory with no upstream key."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from typer.testing import CliRunner

from tenantgate.cli import app
from tests.conftest import SECRET_KEY
from tests.support.process import ServeProcess
from tests.support.services import free_port, own_redis_server

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop


@pytest.fixture
def cli_env(database_url: str) -> dict[str, str]:
    return {
        "TENANTGATE_DATABASE_URL": database_url,
        "TENANTGATE_SECRET_KEY": SECRET_KEY,
        "TENANTGATE_ENV": "production",
    }


def _invoke(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_tenant_and_key_json_contract(cli_env: dict[str, str]) -> None:
    tenant = json.loads(_invoke(cli_env, "tenants", "create", "--name", "cli-co", "--rpm", "5", "--json"))
    assert set(tenant) == {"id", "name"} and tenant["name"] == "cli-co"
    key = json.loads(_invoke(cli_env, "keys", "create", "--tenant", tenant["id"], "--name", "ci", "--json"))
    assert set(key) == {"id", "key", "prefix", "tenant_id"}
    assert key["tenant_id"] == tenant["id"] and key["key"].startswith(key["prefix"])
    revoked = json.loads(_invoke(cli_env, "keys", "revoke", key["id"], "--json"))
    assert revoked == {"id": key["id"], "status": "revoked"}


def test_unknown_tenant_fails_cleanly(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["keys", "create", "--tenant", "ten_nope", "--json"], env=cli_env)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no tenant" in result.stderr


def test_default_secret_is_refused_outside_dev(tmp_path: Path) -> None:
    env = {
        "TENANTGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db",
        "TENANTGATE_ENV": "production",
        "TENANTGATE_SECRET_KEY": "",
    }
    result = CliRunner().invoke(app, ["tenants", "create", "--name", "x"], env=env)
    assert result.exit_code == 2
    assert "TENANTGATE_SECRET_KEY" in result.stderr


def test_serve_on_a_fresh_directory_with_no_upstream_key(tmp_path: Path) -> None:
    """The README's first experience: migrate, demo tenant + key, admin token, dev upstream, SDK call, the admin
    side and the CLI usable with what serve printed and nothing else."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TENANTGATE_") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    env["TENANTGATE_ENV"] = "dev"
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantgate", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = ""
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while "Uvicorn running" not in output and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output += line
        assert "dev upstream" in output, output
        match = re.search(r"(tg-[A-Za-z0-9_-]{43})", output)
        assert match, output
        assert (tmp_path / "tenantgate.db").exists()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=match.group(1), max_retries=3)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        dev_upstream = re.search(r"local dev upstream at (http://\S+?)/v1", output)
        assert dev_upstream, output
        assert httpx.get(f"{dev_upstream.group(1)}/v1/models").status_code == 200

        token = re.search(r"admin token +(tga-[A-Za-z0-9_-]{43})\n", output)
        assert token, output
        admin = {"Authorization": f"Bearer {token.group(1)}"}
        tenants = httpx.get(f"http://127.0.0.1:{port}/admin/tenants", headers=admin).json()["data"]
        assert [t["name"] for t in tenants] == ["demo"]
        assert httpx.get(f"http://127.0.0.1:{port}/console/api/overview", headers=admin).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", headers=admin).status_code == 200
        for where in ("/console", "/docs", "/metrics", "/v1/organization/usage/completions"):
            assert f"http://127.0.0.1:{port}{where}" in output
        assert stat.S_IMODE((tmp_path / "tenantgate.dev.env").stat().st_mode) == 0o600
        # The CLI, as a new user runs it there: no variables at all.
        cli_env = {k: v for k, v in env.items() if not k.startswith("TENANTGATE_")}
        listed = subprocess.run(
            [sys.executable, "-m", "tenantgate", "tenants", "list", "--json"],
            cwd=tmp_path,
            env=cli_env,
            capture_output=True,
            text=True,
        )
        assert listed.returncode == 0, listed.stderr
        assert [t["name"] for t in json.loads(listed.stdout)["data"]] == ["demo"]

        # A supervisor stops serve by its pid alone (not its process group): the dev upstream it started goes too.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == -signal.SIGTERM  # as uvicorn exits: stopped by the signal, gracefully
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{dev_upstream.group(1)}/v1/models")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def _serve_until_it_stops(workdir: Path, port: int | None = None, **settings: str) -> subprocess.CompletedProcess[str]:
    """`tenantgate serve` in dev mode with only ``settings`` (no TENANTGATE_* or TG_* of this process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTGATE_", "TG_"))}
    env.update(TENANTGATE_ENV="dev", **settings)
    command = [sys.executable, "-m", "tenantgate", "serve", "--port", str(port or free_port())]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=60)


def test_serve_stops_with_one_clear_line_when_the_database_cannot_be_migrated(tmp_path: Path) -> None:
    """Migrations run in a child process (so alembic stays out of the server's memory); its failure stops serve."""
    result = _serve_until_it_stops(
        tmp_path, TENANTGATE_DATABASE_URL=f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{free_port()}/nope"
    )
    assert result.returncode == 2
    assert result.stderr.startswith("cannot migrate the database at postgresql+asyncpg://postgres:***@127.0.0.1:")
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("config", "said"),
    [
        (
            "upstreams:\n  - name: a\n    base_url: http://127.0.0.1:9/v1\n    api_key: ${TG_UNSET_KEY}\n",
            ["{file}: environment variable TG_UNSET_KEY is not set"],
        ),
        (  # a value that does not validate: where and why, never the values (the key beside it stays unsaid)
            "upstreams:\n  - name: a\n    base_url: ftp://127.0.0.1:9/v1\n    api_key: sk-do-not-print\n"
            "    max_retries: 99\n",
            [
                "{file}: upstreams.0.base_url: Value error, base_url must start with http:// or https://",
                "{file}: upstreams.0.max_retries: Input should be less than or equal to 10",
            ],
        ),
    ],
)
def test_serve_refuses_a_config_file_it_cannot_use_before_starting_anything(
    tmp_path: Path, config: str, said: list[str]
) -> None:
    (tmp_path / "routes.yaml").write_text(config)
    result = _serve_until_it_stops(tmp_path, TENANTGATE_CONFIG_FILE=str(tmp_path / "routes.yaml"))
    assert result.returncode == 2
    expected = [f"configuration error: {line.format(file=tmp_path / 'routes.yaml')}" for line in said]
    assert result.stderr.splitlines() == expected
    assert "sk-do-not-print" not in result.stdout + result.stderr
    assert not (tmp_path / "tenantgate.db").exists()  # nothing was migrated or started


def test_serve_refuses_a_redis_replica_before_starting_anything(tmp_path: Path, redis_url: str) -> None:
    """As after a Sentinel failover, when the address still names the old master: every limit check would fail."""
    master = urlsplit(redis_url)
    with own_redis_server("--replicaof", master.hostname or "127.0.0.1", str(master.port or 6379)) as replica:
        result = _serve_until_it_stops(tmp_path, TENANTGATE_REDIS_URL=replica)
    assert result.returncode == 2
    port = urlsplit(replica).port
    assert result.stderr.splitlines() == [
        f"configuration error: TENANTGATE_REDIS_URL: Redis at 127.0.0.1:{port} is a read-only replica (ROLE: replica "
        f"of {master.hostname}:{master.port or 6379}), so every limit check would fail: give the address of the "
        "current master, or of a proxy that follows Sentinel's failovers"
    ]
    assert not (tmp_path / "tenantgate.db").exists()  # nothing was migrated or started


def test_serve_refuses_a_port_in_use_before_starting_anything(tmp_path: Path) -> None:
    """Said at once, in one line: not after migrating, creating the demo tenant and starting the dev upstream."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _serve_until_it_stops(tmp_path, port)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: cannot serve on 127.0.0.1:{port}: it is already in use (another tenantgate serve?); stop that "
        "server or choose --port"
    ]
    assert not (tmp_path / "tenantgate.db").exists()  # nothing was migrated or started


def test_serve_with_workers_removes_its_own_metrics_directory_when_stopped(tmp_path: Path, dev_upstream: str) -> None:
    """With several workers and no TENANTGATE_METRICS_DIR, serve makes a temporary directory for the workers'
    metric snapshots; stopped by SIGTERM to its pid, as Kubernetes stops it, it removes it."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {
        "TMPDIR": str(temp),
        "TENANTGATE_ENV": "production",
        "TENANTGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'tg.db'}",
        "TENANTGATE_SECRET_KEY": SECRET_KEY,
        "TENANTGATE_ADMIN_TOKEN": "admin-" + "x" * 32,
        "TENANTGATE_UPSTREAM_BASE_URL": dev_upstream,
        "TENANTGATE_UPSTREAM_API_KEY": "sk-upstream",
        "TENANTGATE_LOG_LEVEL": "warning",
    }
    server = ServeProcess(env, "--workers", "2")
    try:
        server.wait_ready(timeout=90)
        (made,) = temp.glob("tenantgate-metrics-*")
        assert any(made.iterdir())  # the workers' snapshots

        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=60)
        assert not made.exists()
    finally:
        server.stop()


def test_the_dev_upstreams_port_is_kept_after_a_restart() -> None:
    """A stopped dev upstream leaves its port in TIME_WAIT; the next serve takes that port again, not a random one."""
    from tenantgate.cli import _free_port

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn, which serves the dev upstream
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: its end, on the port, waits in TIME_WAIT
        client.close()
    assert _free_port(port) == port
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port))
        busy.listen()
        assert _free_port(port) != port  # a listening server is not shared
