"""Run ``tenantgate serve`` as a real separate process (for behaviour across server processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.services import free_port


class ServeProcess:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        """``args``: more ``tenantgate serve`` options, e.g. ``"--workers", "2"``."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTGATE_", "OPENAI_"))}
        # A file, not a pipe: nobody reads a pipe while the test runs, and a full one would stall the server.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tenantgate", "serve", "--port", str(self.port), *args],
            env=base | env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> ServeProcess:
        deadline = time.monotonic() + timeout
        # One client for every probe: a new one costs ~30 ms of CPU (its TLS context), taken from the server starting.
        with httpx.Client(timeout=2) as probe:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"tenantgate serve exited: {self.process.stderr.read() if self.process.stderr else ''}"
                    )
                try:
                    if probe.get(self.url + "/readyz").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise RuntimeError("tenantgate serve did not become ready")

    def workers(self) -> list[int]:
        """The children of the serving process (Linux /proc): ``--workers N``'s workers, and multiprocessing's
        resource tracker."""
        pid = self.process.pid
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def worker_serving(self, client_port: int) -> int | None:
        """Which worker accepted the loopback connection whose client end is ``client_port``."""
        inode = _accepted_socket_inode(self.port, client_port)
        for pid in self.workers():
            try:
                if any(os.readlink(fd) == f"socket:[{inode}]" for fd in Path(f"/proc/{pid}/fd").iterdir()):
                    return pid
            except FileNotFoundError:  # a file descriptor closed while we looked
                continue
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.log.close()


def _accepted_socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server side of a 127.0.0.1 connection, from /proc/net/tcp (ports in hex)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":"), fields[2].split(":")
        if local == ["0100007F", f"{server_port:04X}"] and remote == ["0100007F", f"{client_port:04X}"]:
            return fields[9]
    return None
