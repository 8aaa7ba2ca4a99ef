"""SIGTERM during a stream: readiness turns false, the stream finishes, the process exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET_KEY, UPSTREAM_KEY
from tests.support.databases import migrated_sqlite_url
from tests.support.services import free_port

pytestmark = pytest.mark.slow  # starts processes or a browser: `-m 'not slow'` skips it for a quick loop


def _cli_json(env: dict[str, str], *args: str) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "tenantgate", *args, "--json"], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(result.stdout))


def _serve_ready(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """``tenantgate serve`` on a free port, once it answers ready. Another test's server may take the port between
    free_port() and the bind (pytest-xdist); serve then exits at once, and a /readyz 200 could be the other server's:
    ready counts only while our process runs, and a lost port is tried again on another."""
    for _ in range(3):
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "tenantgate", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        with httpx.Client() as probe:  # one client for every probe (a new one costs ~30 ms of CPU)
            while server.poll() is None:
                try:
                    if probe.get(base + "/readyz").status_code == 200 and server.poll() is None:
                        return server, base
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "server did not become ready"
                time.sleep(0.1)
        stderr = server.stderr.read() if server.stderr else ""
        assert "already in use" in stderr or "in use" in stderr, f"serve exited before it was ready: {stderr[-2000:]}"
    raise AssertionError("three free ports were taken before serve could bind them")


def test_sigterm_drains_then_finishes_in_flight_streams(tmp_path: Path, slow_dev_upstream: str) -> None:
    database = migrated_sqlite_url(tmp_path / "tg.db")  # what `tenantgate db upgrade` makes, without its process
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TENANTGATE_")},
        "TENANTGATE_DATABASE_URL": database,
        "TENANTGATE_SECRET_KEY": SECRET_KEY,
        "TENANTGATE_UPSTREAM_BASE_URL": slow_dev_upstream,
        "TENANTGATE_UPSTREAM_API_KEY": UPSTREAM_KEY,
        "TENANTGATE_SHUTDOWN_DRAIN_SECONDS": "1.5",
        "TENANTGATE_SHUTDOWN_GRACE_SECONDS": "20",
    }
    tenant_id = _cli_json(env, "tenants", "create", "--name", "t")["id"]
    key = _cli_json(env, "keys", "create", "--tenant", tenant_id)["key"]
    server, base = _serve_ready(env)
    try:
        received: list[bytes] = []

        def stream() -> None:
            body = {
                "model": "gpt-4o-mini",
                "stream": True,
                "messages": [{"role": "user", "content": "one two three four five six seven eight nine ten"}],
            }
            with httpx.stream(
                "POST", base + "/v1/chat/completions", json=body, timeout=30, headers={"Authorization": f"Bearer {key}"}
            ) as response:
                received.extend(response.iter_bytes())

        client = threading.Thread(target=stream)
        client.start()
        time.sleep(0.3)  # the stream is under way (50 ms per token, ~20 tokens)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert httpx.get(base + "/readyz").status_code == 503  # draining: still serving, not ready
        client.join(30)
        assert b"".join(received).rstrip().endswith(b"data: [DONE]")
        # uvicorn re-raises the signal once it has shut down cleanly, so the exit status is "terminated by SIGTERM".
        assert server.wait(30) in (0, -signal.SIGTERM)
        assert "Traceback" not in (server.stderr.read() if server.stderr else "")
    finally:
        if server.poll() is None:
            server.kill()
