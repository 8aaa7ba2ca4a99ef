"""Serve an ASGI app on a real loopback port from a background thread (its own event loop)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn


class ServedApp:
    def __init__(self, app: Any, *, lifespan: str = "on", **options: Any) -> None:
        """``options``: more uvicorn settings (the gateway's are in ``serving.uvicorn_options``); with
        ``ssl_certfile`` and ``ssl_keyfile`` it serves https."""
        # Bound here, to a port the kernel picks, and handed to uvicorn: no window in which another test process
        # takes a port chosen as free (seen as "address already in use" under pytest-xdist).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"{'https' if options.get('ssl_certfile') else 'http'}://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan=lifespan,
            access_log=False,
            server_header=False,
            **options,
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve(sockets=[self._socket]))

    def __enter__(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self._socket.close()
