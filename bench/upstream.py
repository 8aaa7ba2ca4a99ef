"""The canned upstream: nginx serving the static answers of ``bench.canned`` (or a small asyncio server).

nginx (Debian's package) is preferred: one worker process in C costs the benchmark's shared CPU far less than any
Python server. It runs in the foreground from a config generated into the run's temp dir, on loopback only, with
one port per contender so that each forwarder's upstream calls can be counted from its own access log (the usage
check compares those counts with the usage events). The asyncio server is the fallback where nginx is not
installed; run standalone it is ``python -m bench.upstream name=port ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import canned
from bench.services import Process, free_port, start_process


def write_docroot(root: Path) -> None:
    # Started as root, nginx's worker runs as an unprivileged user: the answers live in a directory of their own
    # that it can read, outside the run's private temp dir.
    root.chmod(0o755)
    (root / "completion.json").write_bytes(canned.completion_body())
    (root / "stream.sse").write_bytes(canned.stream_body())
    for path in root.iterdir():
        path.chmod(0o644)


def nginx_config(workdir: Path, root: Path, ports: dict[str, int], logged: set[str]) -> str:
    """nginx serves the answers as static files; POST to a static file is a 405 that error_page turns into the file."""
    stream_var = "$http_" + canned.STREAM_HEADER.replace("-", "_")
    servers = []
    for name, port in ports.items():
        log = f"access_log {workdir / f'upstream-{name}.log'} bench;" if name in logged else "access_log off;"
        servers.append(
            f"""
  server {{
    listen 127.0.0.1:{port};
    {log}
    root {root};
    location = /v1/chat/completions {{ rewrite ^ $canned last; }}
    location = /completion.json {{ internal; default_type application/json; error_page 405 =200 $uri; }}
    location = /stream.sse {{
      internal; default_type "text/event-stream; charset=utf-8"; error_page 405 =200 $uri;
    }}
    location / {{ return 404; }}
  }}"""
        )
    temp = workdir / "nginx-temp"
    return f"""
worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
  types {{ }}
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server_tokens off;
  etag off;
  sendfile on;
  tcp_nopush on;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  log_format bench '$status {stream_var}';
  map {stream_var} $canned {{ default /completion.json; "1" /stream.sse; }}
{"".join(servers)}
}}
"""


class CannedUpstream:
    """One canned upstream process listening on one loopback port per name."""

    def __init__(self, names: list[str], workdir: Path, kind: str = "auto", logged: set[str] | None = None) -> None:
        if kind == "auto":
            kind = "nginx" if shutil.which("nginx") else "asyncio"
        self.kind = kind
        self.workdir = workdir
        self.ports = {name: free_port() for name in names}
        self.logged = set(names) if logged is None else logged
        self.process: Process | None = None
        self.docroot: Path | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/v1"

    def start(self) -> CannedUpstream:
        ports = list(self.ports.values())
        if self.kind == "nginx":
            (self.workdir / "nginx-temp").mkdir(parents=True, exist_ok=True)
            self.docroot = Path(tempfile.mkdtemp(prefix="tg-bench-canned-"))
            write_docroot(self.docroot)
            config = self.workdir / "nginx.conf"
            config.write_text(nginx_config(self.workdir, self.docroot, self.ports, self.logged))
            command = ["nginx", "-c", str(config), "-p", str(self.workdir), "-e", str(self.workdir / "nginx-error.log")]
        else:
            command = [sys.executable, "-m", "bench.upstream", *(f"{n}={p}" for n, p in self.ports.items())]
        self.process = start_process("upstream", command, ports=ports, log_dir=self.workdir)
        return self

    def counts(self) -> dict[str, dict[str, int]]:
        """Answers with status 200 per port name, as {"json": n, "sse": n} (logged names only)."""
        if self.kind == "nginx":
            result = {}
            for name in self.logged:
                path = self.workdir / f"upstream-{name}.log"
                lines = path.read_text().split("\n") if path.exists() else []
                tally = Counter(line.split(" ")[1] for line in lines if line.startswith("200 "))
                result[name] = {"json": sum(v for k, v in tally.items() if k != "1"), "sse": tally.get("1", 0)}
            return result
        import urllib.request

        port = next(iter(self.ports.values()))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_bench/counts", timeout=5) as response:
            by_port: dict[str, dict[str, int]] = json.loads(response.read())
        return {
            name: by_port.get(str(port), {"json": 0, "sse": 0})
            for name, port in self.ports.items()
            if name in self.logged
        }

    def pids(self) -> list[int]:
        return self.process.tree_pids() if self.process else []

    def stop(self) -> None:
        if self.process is not None:
            # nginx: SIGQUIT is the graceful stop; the asyncio server exits on SIGTERM.
            self.process.stop(signal.SIGQUIT if self.kind == "nginx" else signal.SIGTERM)
            self.process = None
        if self.docroot is not None:
            shutil.rmtree(self.docroot, ignore_errors=True)
            self.docroot = None


# --- the asyncio fallback server -------------------------------------------------------------------------------


def _response(content_type: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


_JSON = _response("application/json", canned.completion_body())
_SSE = _response("text/event-stream; charset=utf-8", canned.stream_body())
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
_STREAM_HEADER = canned.STREAM_HEADER.encode() + b": 1"


class _CannedProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one request at a time: enough for every client in the benchmark."""

    def __init__(self, port: int, counts: dict[str, Counter[str]]) -> None:
        self.port = str(port)
        self.counts = counts
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
            self._answer(head)

    def _answer(self, head: bytes) -> None:
        assert self.transport is not None
        target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
        if target == b"/v1/chat/completions":
            stream = _STREAM_HEADER in head
            self.counts.setdefault(self.port, Counter())["sse" if stream else "json"] += 1
            self.transport.write(_SSE if stream else _JSON)
        elif target == b"/_bench/counts":
            body = json.dumps({port: {"json": c["json"], "sse": c["sse"]} for port, c in self.counts.items()})
            self.transport.write(_response("application/json", body.encode()))
        else:
            self.transport.write(_NOT_FOUND)


async def _serve(ports: dict[str, int]) -> None:
    loop = asyncio.get_running_loop()
    counts: dict[str, Counter[str]] = {}
    servers = [
        await loop.create_server(lambda p=port: _CannedProtocol(p, counts), "127.0.0.1", port)  # type: ignore[misc]
        for port in ports.values()
    ]
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Canned OpenAI upstream (asyncio) on loopback ports")
    parser.add_argument("ports", nargs="+", help="name=port pairs")
    args = parser.parse_args()
    ports = {name: int(port) for name, port in (item.split("=", 1) for item in args.ports)}
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(ports))
    else:
        uvloop.run(_serve(ports))


if __name__ == "__main__":
    main()
