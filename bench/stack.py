"""Bring up everything one benchmark run needs, and take it down again.

The canned upstream (one port per contender), the OTLP receiver, a fresh PostgreSQL database migrated by
``tenantgate db upgrade``, the naive passthrough, and each tenantgate variant served by ``tenantgate serve
--workers 1`` with its own tenant and key created through the admin API. Every contender answers one plain and one
streamed request before any load (the preflight), so a misconfigured run fails loudly instead of timing errors.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import canned
from bench.config import DIRECT, FEATURE_ENV, PASSTHROUGH, TENANT_RPM, TENANT_TPM, GatewayVariant
from bench.otlp_sink import OtlpSink
from bench.services import (
    Process,
    create_database,
    delete_redis_prefix,
    drop_database,
    free_port,
    spawn_process,
    wait_listening,
)
from bench.upstream import CannedUpstream

REPO = Path(__file__).resolve().parent.parent
UPSTREAM_KEY = "sk-bench-upstream-key"


@dataclass
class Contender:
    name: str
    base_url: str  # http://host:port/v1
    processes: list[Process]
    key: str = "sk-bench-direct"
    tenant_id: str | None = None

    @property
    def chat_url(self) -> str:
        return self.base_url + "/chat/completions"


@dataclass
class StackOptions:
    variants: tuple[GatewayVariant, ...]
    with_passthrough: bool = True
    upstream_kind: str = "auto"
    postgres_server: str = "postgresql://postgres@127.0.0.1:5432"
    redis_url: str = "redis://127.0.0.1:6379/0"
    keep: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)


def _clean_env() -> dict[str, str]:
    """The caller's environment without any tenantgate or OTel setting, so runs are reproducible."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("TENANTGATE_", "OTEL_", "OPENAI_"))}


def _request(url: str, *, body: object | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Stack:
    def __init__(self, workdir: Path, options: StackOptions) -> None:
        self.workdir = workdir
        self.options = options
        self.run_id = time.strftime("%Y%m%d%H%M%S") + "_" + secrets.token_hex(3)
        self.db_name = f"tg_bench_{self.run_id}"
        self.redis_prefix = f"tgbench-{self.run_id}"
        self.admin_token = secrets.token_urlsafe(24)
        self.secret_key = secrets.token_urlsafe(32)
        self.database_url = ""
        self.upstream: CannedUpstream | None = None
        self.sink: OtlpSink | None = None
        self.contenders: dict[str, Contender] = {}
        self.gateways: dict[str, Process] = {}
        self.spawned: list[Process] = []  # everything started, stopped by close() even if start() failed midway
        self._db_created = False

    # --- bring up -----------------------------------------------------------------------------------------------

    def start(self) -> Stack:
        names = (
            [DIRECT]
            + ([PASSTHROUGH] if self.options.with_passthrough else [])
            + [v.name for v in self.options.variants]
        )
        self.upstream = CannedUpstream(names, self.workdir, self.options.upstream_kind, logged=set(names) - {DIRECT})
        self.upstream.start()
        assert self.upstream.process is not None
        self.contenders[DIRECT] = Contender(DIRECT, self.upstream.url(DIRECT), [self.upstream.process])
        self.sink = OtlpSink().start()
        pending: list[tuple[str, Process]] = []
        if self.options.with_passthrough:
            port = free_port()
            command = [sys.executable, "-m", "bench.passthrough", "--port", str(port)]
            command += ["--upstream", self.upstream.url(PASSTHROUGH)]
            process = spawn_process(PASSTHROUGH, command, ports=[port], log_dir=self.workdir, cwd=REPO)
            self.spawned.append(process)
            pending.append((f"http://127.0.0.1:{port}/v1", process))
        if any(not v.embedded for v in self.options.variants):
            try:
                self.database_url = create_database(self.options.postgres_server, self.db_name)
            except (OSError, asyncpg.PostgresError) as error:
                server = self.options.postgres_server
                raise RuntimeError(f"cannot create the run's database on {server}: {error}") from None
            self._db_created = True
            self._migrate(self.database_url)
        for variant in self.options.variants:
            port = free_port()
            workdir = self.workdir / variant.name
            workdir.mkdir(exist_ok=True)  # its cwd: no stray .env file of the caller is read
            if variant.embedded:
                self._migrate(embedded_database_url(workdir))
            command = [sys.executable, "-m", "tenantgate", "serve", "--port", str(port), "--workers", "1"]
            env = self.gateway_env(variant, workdir)
            process = spawn_process(variant.name, command, ports=[port], log_dir=self.workdir, env=env, cwd=workdir)
            self.gateways[variant.name] = process
            self.spawned.append(process)
            pending.append((f"http://127.0.0.1:{port}/v1", process))
        for base_url, process in pending:
            wait_listening(process)
            self.contenders[process.name] = Contender(process.name, base_url, [process])
        for variant in self.options.variants:
            self._create_tenant(self.contenders[variant.name])
        for contender in self.contenders.values():
            preflight(contender)
        return self

    def gateway_env(self, variant: GatewayVariant, workdir: Path) -> dict[str, str]:
        assert self.upstream is not None and self.sink is not None
        storage = {"TENANTGATE_DATABASE_URL": self.database_url, "TENANTGATE_REDIS_URL": self.options.redis_url}
        if variant.embedded:
            storage = {"TENANTGATE_DATABASE_URL": embedded_database_url(workdir), "TENANTGATE_REDIS_URL": ""}
        return {
            **_clean_env(),
            "TENANTGATE_ENV": "production",
            "TENANTGATE_SECRET_KEY": self.secret_key,
            "TENANTGATE_ADMIN_TOKEN": self.admin_token,
            **storage,
            "TENANTGATE_REDIS_PREFIX": self.redis_prefix,
            "TENANTGATE_UPSTREAM_BASE_URL": self.upstream.url(variant.name),
            "TENANTGATE_UPSTREAM_API_KEY": UPSTREAM_KEY,
            "TENANTGATE_MIGRATE_ON_START": "false",  # migrated once by the harness, as a deploy job would
            "TENANTGATE_LOG_LEVEL": "warning",
            "TENANTGATE_SPOOL_DIR": str(workdir / "spool"),
            **FEATURE_ENV,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.sink.endpoint,
            "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={variant.name}",
            **variant.env,
            **self.options.extra_env,
        }

    def _migrate(self, database_url: str) -> None:
        env = {**_clean_env(), "TENANTGATE_DATABASE_URL": database_url, "TENANTGATE_ENV": "dev"}
        subprocess.run(
            [sys.executable, "-m", "tenantgate", "db", "upgrade"],
            env=env,
            cwd=self.workdir,
            check=True,
            capture_output=True,
        )

    def _create_tenant(self, contender: Contender) -> None:
        contender.tenant_id, contender.key = self.create_tenant(contender, f"bench-{contender.name}")

    def create_tenant(
        self, contender: Contender, name: str, *, rpm: int = TENANT_RPM, tpm: int = TENANT_TPM
    ) -> tuple[str, str]:
        """A tenant with one key on a gateway, through the admin API: (tenant id, plaintext key)."""
        root = contender.base_url.removesuffix("/v1")
        auth = {"Authorization": f"Bearer {self.admin_token}"}
        status, raw = _request(root + "/admin/tenants", body={"name": name, "rpm": rpm, "tpm": tpm}, headers=auth)
        if status != 201:
            raise RuntimeError(f"creating the tenant {name} on {contender.name} failed: {status} {raw[:500]!r}")
        tenant = json.loads(raw)
        status, raw = _request(root + f"/admin/tenants/{tenant['id']}/keys", body={"name": "bench"}, headers=auth)
        if status != 201:
            raise RuntimeError(f"creating the key of {name} on {contender.name} failed: {status} {raw[:500]!r}")
        return tenant["id"], json.loads(raw)["key"]

    # --- measure and take down ------------------------------------------------------------------------------------

    def peak_rss_mb(self) -> dict[str, dict[str, float]]:
        return {name: c.processes[0].peak_rss_mb() for name, c in self.contenders.items()}

    def stop_gateways(self) -> dict[str, int | None]:
        """Graceful stop (SIGTERM, as an orchestrator does), so buffered usage is flushed before it is counted."""
        return {name: process.stop() for name, process in self.gateways.items()}

    def close(self) -> None:
        for process in reversed(self.spawned):
            process.stop()
        if self.upstream is not None:
            self.upstream.stop()
        if self.sink is not None:
            self.sink.stop()
        if self.options.keep:
            return
        if self._db_created:
            drop_database(self.options.postgres_server, self.db_name)
        if any(not v.embedded for v in self.options.variants):
            delete_redis_prefix(self.options.redis_url, self.redis_prefix)

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def embedded_database_url(workdir: Path) -> str:
    return f"sqlite+aiosqlite:///{workdir / 'tenantgate.db'}"


def preflight(contender: Contender) -> None:
    """One plain and one streamed chat completion, checked for shape, before any load."""
    auth = {"Authorization": f"Bearer {contender.key}"}
    status, raw = _request(contender.chat_url, body=canned.REQUEST, headers=auth)
    if status != 200 or json.loads(raw).get("object") != "chat.completion":
        raise RuntimeError(f"{contender.name}: chat completion preflight failed: {status} {raw[:500]!r}")
    status, raw = _request(contender.chat_url, body=canned.STREAM_REQUEST, headers={**auth, canned.STREAM_HEADER: "1"})
    events = [e for e in raw.decode(errors="replace").split("\n\n") if e.strip()]
    usage_seen = any('"usage":{' in e for e in events)
    if status != 200 or not events or events[-1].strip() != "data: [DONE]" or not usage_seen:
        raise RuntimeError(f"{contender.name}: streamed preflight failed: {status} {raw[-500:]!r}")


def describe(stack: Stack) -> dict[str, Any]:
    assert stack.upstream is not None
    return {
        "upstream": stack.upstream.kind,
        "database": stack.db_name if stack.options.variants else None,
        "redis_prefix": stack.redis_prefix if stack.options.variants else None,
        "kept": stack.options.keep,
    }
