"""A scripted upstream on a raw TCP socket: each test queues the exact bytes (and faults) it answers with.

Raw sockets, not ASGI, so a test can send unusual formatting byte for byte, reset connections, stall, or cut a
chunked stream short.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from tests.support.services import free_port


@dataclass
class Recorded:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    """Raw response bytes, written in parts with a delay before each; optionally a reset instead."""

    parts: list[tuple[float, bytes]] = field(default_factory=list)
    reset: bool = False


def json_answer(status: int, body: object, headers: dict[str, str] | None = None, delay: float = 0.0) -> Answer:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    head = [f"HTTP/1.1 {status} X", "Content-Type: application/json", f"Content-Length: {len(raw)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return Answer([(delay, ("\r\n".join(head) + "\r\n\r\n").encode() + raw)])


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def sse_answer(
    events: list[bytes],
    *,
    delays: list[float] | None = None,
    complete: bool = True,
    first_delay: float = 0.0,
    headers: dict[str, str] | None = None,
) -> Answer:
    """A chunked text/event-stream; ``complete=False`` cuts the connection after the last given event."""
    head = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Transfer-Encoding: chunked"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    parts: list[tuple[float, bytes]] = [(first_delay, ("\r\n".join(head) + "\r\n\r\n").encode())]
    delays = delays or [0.0] * len(events)
    parts += [(delay, _chunk(event)) for delay, event in zip(delays, events, strict=True)]
    if complete:
        parts.append((0.0, b"0\r\n\r\n"))
    return Answer(parts)


def chat_completion(content: str = "hi", model: str = "gpt-4o-mini") -> dict[str, object]:
    return {
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }  # fmt: skip


class ScriptedUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.answers: deque[Answer] = deque()
        self.requests: list[Recorded] = []
        self.default = json_answer(200, chat_completion())
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def push(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def __enter__(self) -> ScriptedUpstream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(stop()))
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                answer = self.answers.popleft() if self.answers else self.default
                if answer.reset:
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                for delay, data in answer.parts:
                    if delay:
                        await asyncio.sleep(delay)
                    writer.write(data)
                    await writer.drain()
                writer.close()
                return
        except (ConnectionError, asyncio.IncompleteReadError):
            return

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> Recorded | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return Recorded(method, target, headers, await read_body(reader, headers))


async def read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    """A request's body, after its head: by Content-Length, chunked, or none. ``headers``: names lower-cased."""
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() != "chunked":
        return b""
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return body
        body += data[:-2]
