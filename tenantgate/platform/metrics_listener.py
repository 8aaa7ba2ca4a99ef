"""The separate ``/metrics`` listener (``TENANTGATE_METRICS_PORT``), for a Prometheus inside the network.

It serves only ``GET /metrics``, unauthenticated (the main port's ``/metrics`` needs a token, see metrics.py). With
``serve --workers N`` one worker holds the listener and the others try to bind every few seconds (so one takes over
if it exits); whichever answers merges every worker's snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

from tenantgate.platform.errors import error_body
from tenantgate.platform.http_protocol import BoundedHttpToolsProtocol, HttpLimits
from tenantgate.wire.prometheus import CONTENT_TYPE

if TYPE_CHECKING:
    from tenantgate.observability.telemetry import Telemetry

log = logging.getLogger("tenantgate")
_RETRY_BIND_SECONDS = 5.0


class _MetricsApp:
    """The separate listener's whole application: ``GET /metrics``, and 404 for anything else."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD") and self.telemetry.metrics_enabled:
            status, body, kind = 200, await self.telemetry.prometheus(), CONTENT_TYPE
        else:
            status, body, kind = 404, error_body("Only GET /metrics is served here.", "invalid_request_error"), ""
        headers = [(b"content-type", (kind or "application/json").encode()), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})


class MetricsListener:
    def __init__(self, telemetry: Telemetry, host: str, port: int, limits: HttpLimits) -> None:
        self._app = _MetricsApp(telemetry)
        self._host, self._port, self._limits = host, port, limits
        self._server: asyncio.base_events.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._hold())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._server is not None:
            self._server.close()

    async def _hold(self) -> None:
        from uvicorn.config import Config
        from uvicorn.server import ServerState

        config = Config(self._app, lifespan="off", log_config=None, access_log=False, ws="none")
        config.load()
        state = ServerState()
        told = False
        while self._server is None:
            try:
                sock = _bind(self._host, self._port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    log.error("metrics listener on %s:%d failed: %s", self._host, self._port, exc)
                    return
                if not told:
                    log.info("metrics port %d is held by another process (usually a sibling worker)", self._port)
                    told = True
                await asyncio.sleep(_RETRY_BIND_SECONDS)
                continue

            def protocol(config: Any = config, state: Any = state) -> asyncio.Protocol:
                return BoundedHttpToolsProtocol(config=config, server_state=state, app_state={}, limits=self._limits)

            self._server = await asyncio.get_running_loop().create_server(protocol, sock=sock)
            log.info("metrics on http://%s:%d/metrics", self._host, self._port)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no clash
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
