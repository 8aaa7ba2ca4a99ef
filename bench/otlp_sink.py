"""A local OTLP/HTTP receiver that accepts and discards exports, so telemetry costs the gateway its real SDK work
(spans, metric aggregation, protobuf encoding, HTTP export) without any network dependency.

It answers ``200`` with an empty body (a valid empty ``Export*ServiceResponse``) and counts what arrived, which the
report shows: a benchmark that claims OTel is on but received nothing is visible at a glance.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from bench.services import free_port

_OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"


class _SinkProtocol(asyncio.Protocol):
    def __init__(self, sink: OtlpSink) -> None:
        self.sink = sink
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.startswith(b"content-length:"):
                    length = int(line[15:])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            parts = head.split(b" ", 2)
            path = parts[1].decode("latin-1") if len(parts) > 1 else "?"
            self.sink.requests[path] += 1
            self.sink.bytes[path] += length
            assert self.transport is not None
            self.transport.write(_OK)


class OtlpSink:
    """Runs in a thread of the harness process with its own event loop."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="otlp-sink")
        self._server: asyncio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpSink:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(lambda: _SinkProtocol(self), "127.0.0.1", self.port), self._loop
        )
        self._server = future.result(timeout=10)
        return self

    def stats(self) -> dict[str, dict[str, int]]:
        return {path: {"requests": count, "bytes": self.bytes[path]} for path, count in sorted(self.requests.items())}

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
