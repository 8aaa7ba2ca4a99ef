"""The ``tenantgate`` command line: serve, migrate, manage tenants and keys, run the dev upstream."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from tenantgate import database
from tenantgate.settings import DEFAULT_UPSTREAM_BASE_URL, Environment, Settings
from tenantgate.tenants.metering import cli as usage_cli

app = typer.Typer(no_args_is_help=True, add_completion=False, help="tenantgate: multi-tenant OpenAI gateway")
db_app = typer.Typer(no_args_is_help=True, help="Database migrations")
tenants_app = typer.Typer(no_args_is_help=True, help="Manage tenants")
keys_app = typer.Typer(no_args_is_help=True, help="Manage tenant API keys")
app.add_typer(db_app, name="db")
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.command("usage")(usage_cli.usage)

T = TypeVar("T")
JsonFlag = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout")]


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"configuration error: {error['msg']}", err=True)
        raise typer.Exit(2) from None


def _run(factory: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    settings = _settings()
    return asyncio.run(factory(settings))


async def _with_session(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    engine = database.create_engine(settings.database_url)
    try:
        async with database.session_scope(database.create_sessionmaker(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()


def _emit(as_json: bool, payload: dict[str, Any], human: str) -> None:
    typer.echo(json.dumps(payload) if as_json else human)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations."""
    database.upgrade(_settings().database_url)
    typer.echo("database is up to date", err=True)


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Option("--name", help="Unique tenant name")],
    rpm: Annotated[int | None, typer.Option(help="Requests per minute for the tenant")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute for the tenant")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a tenant."""
    from tenantgate.tenants import service

    async def work(session: Any) -> Any:
        return await service.create_tenant(session, name=name, rpm=rpm, tpm=tpm)

    try:
        tenant = _run(lambda s: _with_session(s, work))
    except service.TenantNameTaken:
        typer.echo(f"error: a tenant named {name!r} already exists", err=True)
        raise typer.Exit(1) from None
    _emit(as_json, {"id": tenant.id, "name": tenant.name}, f"created tenant {tenant.id} ({tenant.name})")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id")],
    name: Annotated[str, typer.Option(help="Key name")] = "default",
    rpm: Annotated[int | None, typer.Option(help="Requests per minute for this key")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute for this key")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key for a tenant. The plaintext key is printed once and never stored."""
    from tenantgate.tenants import repository, service

    async def work(session: Any, settings: Settings) -> Any:
        owner = await repository.get_tenant(session, tenant)
        if owner is None:
            return None
        return await service.create_key(
            session, secret_key=settings.secret_key_bytes, tenant=owner, name=name, rpm=rpm, tpm=tpm
        )

    created = _run(lambda s: _with_session(s, lambda session: work(session, s)))
    if created is None:
        typer.echo(f"error: no tenant with id {tenant!r}", err=True)
        raise typer.Exit(1)
    key = created.key
    _emit(
        as_json,
        {"id": key.id, "key": created.plaintext, "prefix": key.prefix, "tenant_id": key.tenant_id},
        f"created key {key.id} for tenant {key.tenant_id}\n\n    {created.plaintext}\n\n"
        "Store it now: it is not shown again.",
    )


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="Key id")], as_json: JsonFlag = False) -> None:
    """Revoke an API key."""
    from tenantgate.tenants import repository

    async def work(session: Any) -> Any:
        key = await repository.get_key(session, key_id)
        return None if key is None else await repository.revoke_key(session, key)

    key = _run(lambda s: _with_session(s, work))
    if key is None:
        typer.echo(f"error: no key with id {key_id!r}", err=True)
        raise typer.Exit(1)
    _emit(as_json, {"id": key.id, "status": key.status}, f"revoked key {key.id}")


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
    import uvicorn

    settings = _settings()
    if settings.migrate_on_start:
        database.upgrade(settings.database_url)
    if settings.env is Environment.DEV:
        asyncio.run(_ensure_demo_tenant(settings))
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
    typer.echo(f"tenantgate listening on http://{host}:{port}  (OpenAI base_url: http://{host}:{port}/v1)", err=True)
    try:
        uvicorn.run(
            "tenantgate.platform.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=settings.log_level,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        )
    finally:
        if dev_process is not None:
            dev_process.terminate()
            dev_process.wait(timeout=10)


async def _ensure_demo_tenant(settings: Settings) -> None:
    from tenantgate.tenants import repository, service

    async def work(session: Any) -> None:
        if await repository.count_tenants(session) > 0:
            return
        tenant = await service.create_tenant(session, name="demo")
        created = await service.create_key(session, secret_key=settings.secret_key_bytes, tenant=tenant, name="demo")
        typer.secho(
            f"\nCreated demo tenant {tenant.id} with API key (shown once, store it now):\n\n    {created.plaintext}\n",
            fg=typer.colors.GREEN,
            err=True,
        )

    await _with_session(settings, work)


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
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    app()
