"""Serve an ASGI app on a real loopback port from a background thread (its own event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    """uvicorn's server, told to stop without waiting for its next 0.1 s tick (``wake``), and stopping without its
    fixed 0.1 s pauses: a thousand gateways start and stop in a test run, and those pauses alone were 100 s of the
    suite's worker time. Its shutdown is otherwise uvicorn's (0.55): connections asked to close, waited for, then
    the lifespan's shutdown."""

    _wake: asyncio.Event | None = None
    POLL_SECONDS = 0.005
    STOP_SECONDS = 10.0
    """How long connections and requests get to end when the app sets no graceful shutdown timeout."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        """Set once it serves (``started``), so a test waits for that, not for a polling tick."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        asked: set[Any] = set()
        limit = self.config.timeout_graceful_shutdown or self.STOP_SECONDS
        try:
            async with asyncio.timeout(limit):
                # uvicorn sleeps 0.1 s here, then checks every 0.1 s; a closed idle connection is gone in one tick.
                # A connection accepted as the server closed is asked to close too.
                while (self.server_state.connections or self.server_state.tasks) and not self.force_exit:
                    for connection in list(self.server_state.connections):
                        if connection not in asked:
                            asked.add(connection)
                            connection.shutdown()
                    await asyncio.sleep(self.POLL_SECONDS)
                for server in self.servers:
                    await server.wait_closed()
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
            for connection in list(self.server_state.connections):
                connection.transport.close()
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    def wake(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(self._wake.set)


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
        self.server = _Server(config)
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
            self.server.ready.wait(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.server.wake(self.loop)
        self.thread.join(timeout=20)
        self._socket.close()
