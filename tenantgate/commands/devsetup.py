"""The local dev setup ``tenantgate serve`` makes in dev mode (TENANTGATE_ENV=dev, as ``./scripts/serve`` runs it).

On a first run it creates a ``demo`` tenant with an API key and a named admin token ``dev`` (role admin; the
server accepts it as it accepts any named token, so nothing else needs configuring), keeps their plaintexts in
the dev setup's file beside the SQLite database (``tenantgate.dev.env``, mode 0600), and prints, on every start,
what a new user needs: the OpenAI base URL, the demo key, the admin token, where the console, the API docs, the
metrics and the usage API are. The same file tells the CLI that this database is a dev one (settings.py), so its
commands need no variables either. A database the token no longer works on (deleted and made again) gets a new
one. With TENANTGATE_ADMIN_TOKEN set, that token is the admin token and none is made. A dev database that is not
a SQLite file has no such file: its token is made once and shown once.

The dev database itself is made readable by its owner only (``private_database``), like that file: it holds key
hashes and tenants' upstream keys, encrypted under ``TENANTGATE_SECRET_KEY``, which in dev mode is the default
published in the source unless one is set. So a dev database is a local toy, never a copy of production data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from tenantgate.commands.common import mutate, with_session
from tenantgate.settings import Settings, dev_setup_file
from tenantgate.tenants import admin_tokens, key_service, repository, service
from tenantgate.tenants.keys import hash_key
from tenantgate.tenants.models import AdminRole
from tenantgate.tenants.operation import SYSTEM_ACTOR, Operation

# The web console (platform/console/routes.py serves it there; kept a literal so the CLI does not import FastAPI).
CONSOLE_PATH = "/console"
DEV_TOKEN_NAME = "dev"
_ENV = "TENANTGATE_ENV"
_ADMIN_TOKEN = "TENANTGATE_DEV_ADMIN_TOKEN"
_DEMO_KEY = "TENANTGATE_DEV_DEMO_KEY"
_HEADER = (
    "# The dev setup `tenantgate serve` made with TENANTGATE_ENV=dev (./scripts/serve) for the database beside\n"
    "# this file. The CLI reads it when it works on that database, as if TENANTGATE_ENV=dev were set; servers\n"
    "# never do. Delete it to get a new admin token on the next start.\n"
)


@dataclass(frozen=True, slots=True)
class DevSetup:
    file: Path | None
    demo_key: str | None  # None: no demo key is known to work (revoked, or made before this file existed)
    admin_token: str | None  # None: TENANTGATE_ADMIN_TOKEN is configured, or this database's token was shown once
    news: list[str]  # what this start created


async def prepare(settings: Settings) -> DevSetup:
    """Create what is missing (demo tenant and key, dev admin token) and keep it in the dev setup's file."""
    file = dev_setup_file(settings.database_url)
    kept = _read(file) if file is not None else {}
    news: list[str] = []

    async def check(session: AsyncSession) -> tuple[bool, bool, bool]:
        demo = kept.get(_DEMO_KEY)
        token = kept.get(_ADMIN_TOKEN)
        demo_works = (
            demo is not None
            and (await repository.principal_for_key_hash(session, hash_key(settings.secret_key_bytes, demo)))
            is not None
        )
        token_works = (
            token is not None
            and (await admin_tokens.token_for_plaintext(session, settings.secret_key_bytes, token)) is not None
        )
        if file is None:  # nowhere to keep a token: one is made only on a database that has none
            token_works = bool((await admin_tokens.list_tokens(session, limit=1)).items)
        return await repository.count_tenants(session) == 0, demo_works, token_works

    empty, demo_works, token_works = await with_session(settings, check)
    values = {_ENV: "dev"} | kept
    if empty:
        tenant_id, values[_DEMO_KEY] = await mutate(settings, _create_demo, SYSTEM_ACTOR)
        news.append(f"created the demo tenant {tenant_id} and its API key")
        demo_works = True
    if settings.admin_token is None and not token_works:
        values[_ADMIN_TOKEN] = await mutate(settings, _create_admin_token, SYSTEM_ACTOR)
        news.append(f"created the admin token {DEV_TOKEN_NAME!r} (role admin)")
    if file is not None and values != kept:
        _write(file, values)
    return DevSetup(
        file=file,
        demo_key=values.get(_DEMO_KEY) if demo_works else None,
        admin_token=values.get(_ADMIN_TOKEN) if settings.admin_token is None else None,
        news=news,
    )


async def _create_demo(op: Operation) -> tuple[str, str]:
    tenant = await service.create_tenant(op, name="demo")
    created = await key_service.create_key(op, tenant=tenant, name="demo")
    return tenant.id, created.plaintext


async def _create_admin_token(op: Operation) -> str:
    return (await admin_tokens.create_token(op, name=DEV_TOKEN_NAME, role=AdminRole.ADMIN)).plaintext


def _read(file: Path) -> dict[str, str]:
    """``NAME=value`` lines (the file is ours: values are tokens, never quoted)."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def private_database(settings: Settings) -> None:
    """Make the dev SQLite database file 0600 before anything opens it (created empty, which SQLite takes for a new
    database), and tighten one made before; SQLite gives its ``-wal`` and ``-shm`` files the database file's mode,
    and those already there are tightened too. Other databases are not files of ours: left alone."""
    if dev_setup_file(settings.database_url) is None:
        return
    from sqlalchemy.engine import make_url

    database = Path(str(make_url(settings.database_url).database))
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return  # no such directory, or not ours to create: the migration will say so in its own words
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        try:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
        except OSError:
            continue


def _write(file: Path, values: dict[str, str]) -> None:
    """Readable by its owner only from the first byte on: written to a new 0600 file, then moved over."""
    temporary = file.with_name(f".{file.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(_HEADER)
        out.writelines(f"{name}={value}\n" for name, value in values.items())
    os.replace(temporary, file)


def summary(setup: DevSetup, settings: Settings, host: str, port: int) -> str:
    """What ``serve`` prints in dev mode, every time: everything needed to try the gateway."""
    base = f"http://{_reachable(host)}:{port}"
    if setup.admin_token is not None:
        token = setup.admin_token
    elif settings.admin_token is not None:
        token = "the one in TENANTGATE_ADMIN_TOKEN"
    else:
        token = "shown when it was made (tenantgate tokens create --name NAME --role admin makes another)"
    demo = setup.demo_key or "none known to work (tenantgate keys create --tenant TENANT_ID makes one)"
    rows = [
        ("OpenAI base_url", f"{base}/v1"),
        ("demo API key", demo),
        ("admin token", token),
        ("console", f"{base}{CONSOLE_PATH}  (sign in with the admin token)"),
        ("API docs", f"{base}/docs"),
        ("metrics", _metrics(settings, base)),
        ("usage API", f"{base}/v1/organization/usage/completions?start_time=UNIX_SECONDS  (admin token or a key)"),
    ]
    if setup.file is not None:
        # A checkout's CLI is in its .venv (./scripts/serve); an installed one is on the PATH.
        cli = ".venv/bin/tenantgate" if Path(".venv/bin/tenantgate").exists() else "tenantgate"
        rows.append(("CLI", f"{cli} tenants list  (no variables needed here: {setup.file} says dev mode)"))
    lines = [f"tenantgate dev setup: {news}" for news in setup.news]
    lines.append("tenantgate (TENANTGATE_ENV=dev):")
    lines.extend(f"  {name:<16} {value}" for name, value in rows)
    return "\n".join(lines)


def _metrics(settings: Settings, base: str) -> str:
    if settings.metrics_port is not None:  # a listener of its own, without a token
        return f"http://{_reachable(settings.metrics_host)}:{settings.metrics_port}/metrics"
    return f"{base}/metrics  (admin token)"


def _reachable(host: str) -> str:
    """The address to print for a listening address: a wildcard is reachable on loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
