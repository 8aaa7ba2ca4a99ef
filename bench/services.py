"""Processes and services of a benchmark run: start/stop servers, their peak memory, a fresh database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += _children(current)
    return pids


def memory_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set) and VmRSS of one process, in kB; empty if it is gone."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                name, amount = line.split(":", 1)
                values[name] = int(amount.split()[0])
    except OSError:
        return {}
    return values


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    ports: list[int] = field(default_factory=list)
    _peaks: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tree_pids(self) -> list[int]:
        return process_tree(self.pid) if self.popen.poll() is None else []

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak resident memory of each process of the tree (the server and its workers) so far, in MB.

        The largest of every VmHWM this object has read: Linux reports VmHWM as the larger of the current RSS and a
        high-water mark it stores only at some of the points where RSS goes down (fs/proc/task_mmu.c), so a peak
        that was read off the current RSS can read lower later (100.2 MB after one load phase, 99.9 after the next).
        Read it after every phase of load to keep each phase's peak.
        """
        for pid in self.tree_pids():
            memory = memory_kb(pid)
            if memory:
                peak = round(memory.get("VmHWM", 0) / 1024, 1)
                self._peaks[str(pid)] = max(peak, self._peaks.get(str(pid), 0.0))
        return dict(self._peaks)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        return self.popen.returncode


class StartupError(RuntimeError):
    pass


def spawn_process(
    name: str,
    command: list[str],
    *,
    ports: list[int],
    log_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Process:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd
        )
    return Process(name, popen, log_path, ports)


def wait_listening(process: Process, timeout: float = 60) -> Process:
    """Wait until all the process's ports accept connections, or fail with the end of its log."""
    deadline = time.monotonic() + timeout
    while not all(port_open(p) for p in process.ports):
        if process.popen.poll() is not None:
            raise StartupError(
                f"{process.name} exited with {process.popen.returncode} while starting:\n{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            process.stop(signal.SIGKILL)
            raise StartupError(
                f"{process.name} did not listen on {process.ports} within {timeout:.0f} s:\n{process.log_tail()}"
            )
        time.sleep(0.05)
    return process


def start_process(
    name: str,
    command: list[str],
    *,
    ports: list[int],
    log_dir: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> Process:
    """Start a server and wait until it listens."""
    process = spawn_process(name, command, ports=ports, log_dir=log_dir, env=env, cwd=cwd)
    return wait_listening(process, timeout)


# --- Postgres and Redis of the run --------------------------------------------------------------------------------


def _pg_admin(server_url: str, sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(f"{server_url}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def create_database(server_url: str, name: str) -> str:
    """Create an empty database; returns tenantgate's SQLAlchemy URL for it."""
    _pg_admin(server_url, f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)


def drop_database(server_url: str, name: str) -> None:
    _pg_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_redis_prefix(redis_url: str, prefix: str) -> int:
    """Remove every key the run wrote under its own prefix."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        return len(keys)
    finally:
        client.close()
