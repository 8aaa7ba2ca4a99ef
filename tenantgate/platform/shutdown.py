"""Graceful shutdown: on SIGTERM, first report not-ready for a drain period, then let uvicorn stop.

uvicorn stops accepting connections as soon as it gets SIGTERM and then waits (up to
TENANTGATE_SHUTDOWN_GRACE_SECONDS) for in-flight requests, streams included. With a drain period the process keeps
serving for that long while /readyz answers 503, so load balancers take it out of rotation before the listener
closes. The lifespan's shutdown then flushes buffers.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("tenantgate")


def install_drain_handler(on_drain: Callable[[], None], drain_seconds: float) -> Callable[[], None]:
    """Wrap the server's SIGTERM handler; returns a function restoring the previous one."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals only reach the main thread (e.g. servers run in test threads)
    loop = asyncio.get_running_loop()
    previous: Any = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return lambda: None

    def handle(sig: int, frame: FrameType | None) -> None:
        on_drain()
        if drain_seconds <= 0:
            previous(sig, frame)
            return
        log.info("SIGTERM: draining for %.1fs before shutting down", drain_seconds)
        loop.call_soon_threadsafe(loop.call_later, drain_seconds, previous, sig, None)

    signal.signal(signal.SIGTERM, handle)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
