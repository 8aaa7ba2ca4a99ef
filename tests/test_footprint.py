"""A worker's memory: importing the app leaves out what only some deployments use (docs/performance.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, SECRET_KEY, UPSTREAM_KEY, make_settings
from tests.support.gateway import Gateway
from tests.support.otlp import HttpReceiver
from tests.support.process import ServeProcess
from tests.support.scripted import ScriptedUpstream

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop

REPO = Path(__file__).resolve().parents[1]

_LEFT_OUT = (
    "cryptography.fernet",  # tenants' own upstream keys: loaded on first encrypt/decrypt (~7 MB)
    "alembic",  # migrations run before serving, from the CLI
    "aiohttp",  # tenants' own base URLs and the aiohttp client setting: loaded on first use (~9.5 MB)
    "redis",  # redis-py: the gateway speaks RESP with its own client (tenantgate/wire/resp.py; ~7 MB)
    "unittest.mock",
)


@pytest.fixture(scope="module")
def loaded_by_importing_the_app() -> dict[str, bool]:
    """Which of ``_LEFT_OUT`` a fresh interpreter has loaded once it imported the app (one interpreter for all of
    them: it only looks; module-scoped, so the tests using it run in one test process, tests/support/scheduling.py)."""
    modules = repr(_LEFT_OUT)
    code = f"import json, sys, tenantgate.platform.app; print(json.dumps({{m: m in sys.modules for m in {modules}}}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded: dict[str, bool] = json.loads(out.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("module", _LEFT_OUT)
def test_importing_the_app_does_not_load(module: str, loaded_by_importing_the_app: dict[str, bool]) -> None:
    assert loaded_by_importing_the_app[module] is False


def test_the_secret_box_loads_its_cipher_when_first_used() -> None:
    code = (
        "import sys; from tenantgate.tenants.secrets import SecretBox; box = SecretBox(b'k' * 32); "
        "before = 'cryptography.fernet' in sys.modules; sealed = box.encrypt('sk-upstream'); "
        "print(before, 'cryptography.fernet' in sys.modules, box.decrypt(sealed), SecretBox(b'x' * 32).decrypt(sealed))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "sk-upstream", "None"]


def _serving_process(estimates: str) -> list[str]:
    """What ``tenantgate serve``'s app factory did in a fresh process: when the tokenizer was built, what is loaded."""
    code = (
        "import sys; from tenantgate import tokens; built = []; build = tokens._encoding.__wrapped__\n"
        "def recording(name):\n"
        "    built.append((name, 'tenantgate.platform.app' in sys.modules)); return build(name)\n"
        "tokens._encoding = recording\n"
        "from tenantgate.platform import serving; app = serving.create_app()\n"
        "print(built, tokens.encoding_for_model('gpt-4o-mini') is not None, 'tenantgate.platform.app' in sys.modules,\n"
        "      'tiktoken' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTGATE_")}
    env.update(
        TENANTGATE_ENV="dev", TENANTGATE_DATABASE_URL="sqlite+aiosqlite://", TENANTGATE_TOKEN_ESTIMATES=estimates
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1:]


def test_serving_builds_the_tokenizer_before_importing_the_app() -> None:
    # Built first, its transient memory is reused by the imports rather than stacked on them; and the first
    # request of a gpt-4o-family model is estimated with it, not with the heuristic.
    assert _serving_process("tiktoken") == ["[('o200k_base', False)] True True True"]


def test_heuristic_estimates_load_no_tokenizer() -> None:
    assert _serving_process("heuristic") == ["[] False True False"]  # tiktoken itself is not imported


def _maps_aiohttp(pid: int) -> bool:
    """Whether the process has aiohttp's compiled parser mapped (aiohttp loads it when imported)."""
    return "/aiohttp/" in Path(f"/proc/{pid}/maps").read_text()


def _production(sqlite_url: str, dev_upstream: str) -> dict[str, str]:
    """The environment of a production ``tenantgate serve`` against the dev upstream (default token estimates)."""
    return {
        "TENANTGATE_ENV": "production",
        "TENANTGATE_DATABASE_URL": sqlite_url,
        "TENANTGATE_SECRET_KEY": SECRET_KEY,
        "TENANTGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TENANTGATE_UPSTREAM_BASE_URL": dev_upstream,
        "TENANTGATE_UPSTREAM_API_KEY": UPSTREAM_KEY,
        "TENANTGATE_LOG_LEVEL": "warning",
    }


@contextmanager
def _serving_one_chat(env: dict[str, str], content: str) -> Iterator[tuple[int, Gateway, dict[str, Any]]]:
    """A ``tenantgate serve`` process with ``env`` that has answered one chat completion through the SDK: its pid,
    a gateway handle and the key (with its tenant) it was made with. Stopped on leaving."""
    server = ServeProcess(env)
    try:
        gateway = Gateway(url=server.wait_ready().url, admin_token=ADMIN_TOKEN, settings=make_settings())
        key = gateway.new_key("footprint")
        messages = [{"role": "user", "content": content}]
        gateway.client(key["key"]).chat.completions.create(model="gpt-4o-mini", messages=messages)
        yield server.process.pid, gateway, key
    finally:
        server.stop()


def test_a_worker_loads_no_websockets_and_aiohttp_only_for_a_tenants_own_base_url(
    sqlite_url: str, dev_upstream: str
) -> None:
    env = _production(sqlite_url, dev_upstream) | {
        "TENANTGATE_TENANT_UPSTREAM_ALLOWED_NETWORKS": "127.0.0.0/8",
        "TENANTGATE_TENANT_UPSTREAM_ALLOW_HTTP": "true",
    }
    with _serving_one_chat(env, "hi") as (pid, gateway, key):
        assert not _maps_aiohttp(pid)  # the operator's upstream: the gateway's own client
        assert "/websockets/" not in Path(f"/proc/{pid}/maps").read_text()  # uvicorn's ws="none"

        with ScriptedUpstream() as own:
            path = f"/admin/tenants/{key['tenant_id']}/upstream-keys/default"
            put = gateway.admin("PUT", path, json={"api_key": "sk-tenant-own", "base_url": own.base_url})
            assert put.status_code == 200, put.text
            messages = [{"role": "user", "content": "hi"}]
            reply = gateway.client(key["key"]).chat.completions.create(model="gpt-4o-mini", messages=messages)
            assert reply.choices[0].message.content == "hi"
            (request,) = own.requests
            assert request.headers["authorization"] == "Bearer sk-tenant-own"
        assert _maps_aiohttp(pid)


def test_the_serving_process_holds_no_command_line(sqlite_url: str, dev_upstream: str) -> None:
    """``tenantgate serve`` prepares, then execs the lean serving entry (same pid): typer and the commands' imports
    (3 MB) are not in the process that serves."""
    with _serving_one_chat(_production(sqlite_url, dev_upstream), "hi") as (pid, _, _):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[1:3] == [b"-m", b"tenantgate.platform.serving"], argv
    code = (
        "import sys, uvicorn, tenantgate.platform.serving, tenantgate.platform.app\n"
        "print(sorted(m for m in ('typer', 'tenantgate.cli', 'tenantgate.commands', 'watchfiles') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_a_worker_exports_otlp_over_http_without_requests_or_protobuf(sqlite_url: str, dev_upstream: str) -> None:
    """The SDK's OTLP/HTTP exporters would load requests (with charset_normalizer's compiled modules) and protobuf
    (its upb extension); the gateway's own exporters load neither and still deliver spans and metrics."""
    with HttpReceiver() as receiver:
        env = _production(sqlite_url, dev_upstream) | {
            "TENANTGATE_TRACING_ENABLED": "true",
            "OTEL_SERVICE_NAME": "tg-footprint",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp,prometheus",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
        }
        with _serving_one_chat(env, "trace me") as (pid, _, _):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not (
                any(s.name == "chat gpt-4o-mini" for s in receiver.received.spans())
                and receiver.received.metric("gen_ai.client.token.usage") is not None
            ):
                time.sleep(0.1)
            assert receiver.received.resource_attributes()["service.name"] == "tg-footprint"
            assert receiver.received.metric("gen_ai.client.token.usage") is not None
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert "/google/_upb/" not in maps and "/charset_normalizer/" not in maps
