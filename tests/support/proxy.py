"""A small HTTP forward proxy for tests: CONNECT tunnels and absolute-form requests, optional Basic credentials.

It resolves upstream host names from its own table, as a company proxy resolves names the gateway's machine cannot
(so tests can give upstreams names no DNS knows, and the gateway never resolves them itself). It records what it
was asked (method, target, the Proxy-Authorization it got) in ``seen``. Runs on a thread of its own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.support.scripted import read_body
from tests.support.services import free_port


@dataclass
class Seen:
    method: str
    target: str
    proxy_authorization: str | None
    headers: dict[str, str] = field(default_factory=dict)


class ForwardProxy:
    def __init__(self, hosts: dict[str, str] | None = None, credentials: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.hosts = dict(hosts or {})  # host name -> address the proxy connects to
        self.credentials = credentials
        self.seen: list[Seen] = []
        self.connections = 0
        self._open: set[asyncio.StreamWriter] = set()  # both sides of every connection, closed when the proxy stops
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        """The proxy URL to configure, with its credentials."""
        login = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"http://{login}127.0.0.1:{self.port}"

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in self._open:
                writer.transport.abort()  # an upstream server waiting on a tunnel's connection need not wait on
            for _ in range(3):
                await asyncio.sleep(0)  # the sockets close in callbacks the loop runs next
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

    def _authorized(self, value: str | None) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(f"{self.credentials[0]}:{self.credentials[1]}".encode()).decode()
        return value == f"Basic {expected}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        upstreams: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                pairs = (line.partition(":") for line in lines[1:] if line)
                fields = {name.strip().lower(): value.strip() for name, _, value in pairs}
                authorization = fields.get("proxy-authorization")
                self.seen.append(Seen(method, target, authorization, fields))
                body = b"" if method == "CONNECT" else await read_body(reader, fields)
                if not self._authorized(authorization):
                    writer.write(
                        b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n'
                        b"Content-Length: 0\r\n\r\n"
                    )
                    await writer.drain()
                    if method == "CONNECT":
                        return
                    continue
                if method == "CONNECT":
                    host, _, port = target.rpartition(":")
                    await self._tunnel(reader, writer, host.strip("[]"), int(port))
                    return
                url = urlsplit(target)
                where = (url.hostname or "", url.port or 80)
                if where not in upstreams:
                    upstreams[where] = await asyncio.open_connection(self.hosts.get(where[0], where[0]), where[1])
                    self._open.add(upstreams[where][1])
                up_reader, up_writer = upstreams[where]
                path = (url.path or "/") + (f"?{url.query}" if url.query else "")
                kept = "".join(f"{line}\r\n" for line in lines[1:] if line and not line.lower().startswith("proxy-"))
                up_writer.write(f"{method} {path} {version}\r\n{kept}\r\n".encode("latin-1") + body)
                await up_writer.drain()
                if not await _relay_answer(up_reader, writer, method):
                    return
        finally:
            for _, up_writer in upstreams.values():
                up_writer.close()
            writer.close()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.hosts.get(host, host), port)
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        self._open.add(up_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def _relay_answer(source: asyncio.StreamReader, sink: asyncio.StreamWriter, method: str) -> bool:
    """Copy one answer, byte for byte; False when the connection ends with it."""
    while True:
        head = await source.readuntil(b"\r\n\r\n")
        sink.write(head)
        status = int(head.split(b" ", 2)[1])
        if not 100 <= status < 200:
            break
    lowered = head.lower()
    if method == "HEAD" or status in (204, 304):
        pass
    elif b"transfer-encoding: chunked" in lowered:
        while True:
            size_line = await source.readuntil(b"\r\n")
            sink.write(size_line)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while (line := await source.readuntil(b"\r\n")) != b"\r\n":
                    sink.write(line)
                sink.write(b"\r\n")
                break
            sink.write(await source.readexactly(size + 2))
    elif b"content-length:" in lowered:
        length = int(lowered.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        sink.write(await source.readexactly(length))
    else:
        sink.write(await source.read())
        await sink.drain()
        return False
    await sink.drain()
    return b"connection: close" not in lowered
