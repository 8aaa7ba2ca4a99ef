"""The ``tenantgate`` command line: serve, migrate, manage tenants and keys, run the dev upstream.

What a command needs is imported when it runs (see commands/common.py): ``--help`` loads typer and nothing of the
gateway. Help is plain text (``rich_markup_mode=None``): typer's rich panels cost a third more start-up time and
show flags such as ``--json`` as if they took a ``<bool>`` value.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Annotated

import typer

from tenantgate import commands
from tenantgate.commands.common import load_settings

if TYPE_CHECKING:
    from tenantgate.settings import Settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="tenantgate: multi-tenant OpenAI gateway",
)
db_app = typer.Typer(no_args_is_help=True, help="Database migrations")
app.add_typer(db_app, name="db")
commands.register(app)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from tenantgate import database

    url = load_settings().database_url
    try:
        database.upgrade(url)
    except (OSError, OperationalError) as error:
        where = make_url(url).render_as_string(hide_password=True)
        reason = error.orig if isinstance(error, OperationalError) else error
        typer.secho(f"cannot migrate the database at {where}: {reason}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo("database is up to date", err=True)


@app.command("dev-upstream")
def dev_upstream(
    host: str = "127.0.0.1",
    port: int = 9000,
    token_delay_ms: Annotated[float, typer.Option(help="Delay before each generated token")] = 0.0,
) -> None:
    """Run the local OpenAI-compatible dev upstream (for offline trials, tests and benchmarks)."""
    import uvicorn

    from tenantgate.devupstream import DevUpstream

    typer.echo(f"dev upstream: OpenAI-compatible test server on http://{host}:{port}/v1", err=True)
    uvicorn.run(
        DevUpstream(token_delay_ms=token_delay_ms),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


@app.command("serve")
def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: Annotated[int, typer.Option(envvar="TENANTGATE_WORKERS", min=1)] = 1,
) -> None:
    """Migrate (unless TENANTGATE_MIGRATE_ON_START=false) and serve the gateway."""
    import asyncio

    from tenantgate.platform import serving
    from tenantgate.settings import DEFAULT_UPSTREAM_BASE_URL, Environment

    settings = load_settings(dev_setup=False)
    _check_routing(settings)
    _check_network(settings)
    _check_redis(settings)
    _check_port(host, port)
    if settings.env is Environment.DEV:
        from tenantgate.commands import devsetup

        devsetup.private_database(settings)  # 0600 before the migration creates it
    if settings.migrate_on_start:
        # In a child process, so alembic and the migration run do not stay in the serving process's memory (8 MB).
        migrated = subprocess.run([sys.executable, "-m", "tenantgate", "db", "upgrade"], check=False)
        if migrated.returncode != 0:
            raise typer.Exit(migrated.returncode)
    dev_setup = None
    if settings.env is Environment.DEV:
        from tenantgate.commands import devsetup

        dev_setup = asyncio.run(devsetup.prepare(settings))
    dev_process = None
    if settings.upstream_api_key is None and settings.upstream_base_url == DEFAULT_UPSTREAM_BASE_URL:
        dev_process, url = _start_dev_upstream()
        # Workers are separate processes that read their settings from the environment.
        os.environ["TENANTGATE_UPSTREAM_BASE_URL"] = url
        typer.secho(
            f"No upstream API key configured (TENANTGATE_UPSTREAM_API_KEY / OPENAI_API_KEY): serving against the "
            f"local dev upstream at {url}, which answers with canned text, not a real model.",
            fg=typer.colors.YELLOW,
            err=True,
        )
    metrics_dir = _prepare_metrics_dir(settings, workers)
    if dev_setup is not None:
        typer.secho(devsetup.summary(dev_setup, settings, host, port), fg=typer.colors.GREEN, err=True)
    typer.echo(f"tenantgate starting on http://{host}:{port}  (OpenAI base_url: http://{host}:{port}/v1)", err=True)
    # The serving process is a lean one (tenantgate/platform/serving.py): the command line is not kept in memory.
    # It stops the dev upstream and removes the temporary metrics directory when it exits.
    argv = serving.command(
        host,
        port,
        workers,
        stop_pid=dev_process.pid if dev_process is not None else None,
        remove_dir=metrics_dir,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(argv[0], argv)
    except OSError as error:
        if dev_process is not None:
            serving.stop_child(dev_process.pid)
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        typer.secho(f"cannot start the server: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def _check_routing(settings: Settings) -> None:
    """A config file that cannot be used is said before anything starts, a line per problem, not as a traceback."""
    from pydantic import ValidationError

    from tenantgate.platform.upstream.config import gateway_config

    try:
        gateway_config(settings)
    except ValidationError as error:  # each problem, where it is; never the values (they may be keys)
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"])
            typer.echo(f"configuration error: {settings.config_file}: {where}: {problem['msg']}", err=True)
        raise typer.Exit(2) from None
    except (OSError, ValueError) as error:
        typer.echo(f"configuration error: {error}", err=True)
        raise typer.Exit(2) from None


def _check_port(host: str, port: int) -> None:
    """A port in use is said at once: uvicorn would say it only once migrations, the dev upstream and the app's
    imports are done (14 s on a laptop). Bound as uvicorn binds, so a port whose last server left connections in
    TIME_WAIT is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                reason = "it is already in use (another tenantgate serve?); stop that server or choose --port"
            else:
                reason = error.strerror or str(error)
            typer.secho(f"error: cannot serve on {host}:{port}: {reason}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None


def _check_network(settings: Settings) -> None:
    """Proxies and CA files the upstream clients cannot use are said before anything starts, never a credential."""
    from tenantgate.platform.upstream.network import OutboundNetwork

    try:
        OutboundNetwork.from_settings(settings)
    except ValueError as error:
        typer.echo(f"configuration error: {error}", err=True)
        raise typer.Exit(2) from None


def _check_redis(settings: Settings) -> None:
    """A Redis the limiter cannot write to (a replica, a Sentinel, a Cluster node) is said before anything starts,
    in one line, like a URL that is refused. One that cannot be reached is no reason not to start: the limiter falls
    back until it answers (each worker checks again when it starts)."""
    if not settings.redis_url:
        return
    import asyncio

    from tenantgate.wire.resp import RedisError, RedisRefused, RespClient

    async def refusal() -> str | None:
        client = RespClient.from_url(settings.redis_url, connect_timeout=2)
        try:
            await client.check()
        except RedisRefused as error:
            return str(error)
        except (RedisError, OSError, TimeoutError):
            return None
        finally:
            await client.aclose()
        return None

    refused = asyncio.run(refusal())
    if refused is not None:
        typer.echo(f"configuration error: TENANTGATE_REDIS_URL: {refused}", err=True)
        raise typer.Exit(2)


def _prepare_metrics_dir(settings: Settings, workers: int) -> str | None:
    """Workers share metric snapshots through a directory (observability/exposition.py).

    Returns the directory to delete at exit when ``serve`` made a temporary one itself.
    """
    from tenantgate.observability.exposition import clear_snapshots

    if settings.metrics_dir is not None:
        clear_snapshots(settings.metrics_dir)
        return None
    if workers < 2 or not settings.metrics_enabled:
        return None
    directory = tempfile.mkdtemp(prefix="tenantgate-metrics-")
    os.environ["TENANTGATE_METRICS_DIR"] = directory  # workers read their settings from the environment
    return directory


def _start_dev_upstream() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port(9000)
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantgate", "dev-upstream", "--host", "127.0.0.1", "--port", str(port)]
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise typer.Exit(1)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.1)
    process.terminate()
    typer.echo("error: the dev upstream did not start", err=True)
    raise typer.Exit(1)


def _free_port(preferred: int) -> int:
    """``preferred`` unless something listens there; connections of a stopped server in TIME_WAIT do not count."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    app()
