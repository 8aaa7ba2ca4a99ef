"""The serving process: what ``tenantgate serve`` becomes once it has prepared, and the app factory it gives uvicorn.

``tenantgate serve`` migrates, creates the dev demo tenant and starts the dev upstream, then replaces itself
(``exec``, same pid, so signals and process supervisors see no difference) with ``python -m
tenantgate.platform.serving``, which only runs uvicorn. The processes that serve requests therefore never hold the
command line (typer, every command and what they import: 3 MB in each worker).

The tokenizer is built before the app is imported: the ~25 MB that building it holds for a moment are then freed
for the app's imports to reuse, instead of adding to the process's peak memory on top of them (a process that
imports the app and builds o200k_base peaks at 170 MB building it after the imports, 141 MB before). It also
means the first requests are estimated exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from tenantgate import tokens
from tenantgate.settings import Settings

if TYPE_CHECKING:
    from tenantgate.platform.app import GatewayApp

_CHILD_STOP_SECONDS = 10.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


_settings: Settings | None = None
"""This process's settings, read once: ``main`` reads them, and with one worker uvicorn calls ``create_app`` in the
same process (with several, each spawned worker reads its own, once)."""


def process_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def create_app() -> GatewayApp:
    settings = process_settings()
    tokens.configure(settings.token_estimates)
    tokens.preload()
    from tenantgate.platform.app import create_app as build  # after the tokenizer: see above

    return build(settings)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The gateway's own uvicorn settings (also for tests that serve an app in-process)."""
    from tenantgate.platform.http_protocol import HttpLimits, protocol_factory

    return {
        "ws": "none",  # no WebSocket endpoints: upgrade requests are plain HTTP requests (and websockets never loads)
        "http": protocol_factory(HttpLimits.from_settings(settings)),  # bounded heads, deadlines, connections
        "timeout_keep_alive": int(settings.http_keepalive_timeout_seconds),
    }


def command(host: str, port: int, workers: int, *, stop_pid: int | None, remove_dir: str | None) -> list[str]:
    """The arguments ``tenantgate serve`` execs into (``sys.executable`` first)."""
    args = [
        sys.executable,
        "-m",
        "tenantgate.platform.serving",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if stop_pid is not None:
        args += ["--stop-pid", str(stop_pid)]
    if remove_dir is not None:
        args += ["--remove-dir", remove_dir]
    return args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tenantgate.platform.serving", description="Serve the gateway (use `tenantgate serve`)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--stop-pid", type=int, help="a child process to stop on exit (serve's dev upstream)")
    parser.add_argument("--remove-dir", help="a directory to delete on exit (serve's temporary metrics directory)")
    args = parser.parse_args(argv)

    import uvicorn

    from tenantgate.observability.logging import logging_config

    settings = process_settings()
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then puts back the handlers it found and raises the signal
    # again: with the default ones the process would die right there, before the clean-up below.
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _raise_stopped)
    stopped_by: int | None = None
    try:
        uvicorn.run(
            "tenantgate.platform.serving:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=settings.log_level,
            log_config=logging_config(settings),
            access_log=False,
            server_header=False,
            **uvicorn_options(settings),
            # X-Forwarded-For/-Proto are honoured only from configured proxies (uvicorn's layer costs time too).
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=settings.trusted_proxies or None,
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        )
    except _Stopped as stop:
        stopped_by = stop.signum
    finally:
        if args.stop_pid is not None:
            stop_child(args.stop_pid)
        if args.remove_dir is not None:
            shutil.rmtree(args.remove_dir, ignore_errors=True)
    if stopped_by is not None:
        # Exit as stopped by that signal, as uvicorn would have.
        signal.signal(stopped_by, signal.SIG_DFL)
        signal.raise_signal(stopped_by)


class _Stopped(BaseException):
    """uvicorn's re-raised stop signal: a control flow, like KeyboardInterrupt, that no ``except Exception`` stops."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def stop_child(pid: int) -> None:
    """Terminate a child process and reap it; killed if it has not exited within ``_CHILD_STOP_SECONDS``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _CHILD_STOP_SECONDS
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return  # not our child (or already reaped)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
