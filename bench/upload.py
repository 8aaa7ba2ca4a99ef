"""A large upload through one worker: its memory stays flat, and how fast the bytes go through.

    python -m bench.upload [--mib 1024] [--part-mib 64]

One ``tenantgate serve --workers 1`` on the benchmark's own stack (PostgreSQL, Redis, OTel; bench/stack.py), in
front of bench/discard_upstream.py (the dev upstream with a Files API that counts what it is sent and drops it, so
neither its disk nor its memory is measured). The file is made up as it is sent (one random MiB, repeated) and never
exists whole anywhere. It goes up twice: as one ``POST /v1/files`` (multipart with a Content-Length, as the SDKs send
it), then through the Uploads API (``POST /v1/uploads``, ``--part-mib`` parts, OpenAI's largest being 64 MiB, then
``complete``). A thread reads the gateway's resident memory (VmRSS of its process tree, from /proc) every
``--sample-ms`` during each upload. Printed per method: RSS before, the peak during (the sampled one, or VmHWM when
that grew), RSS a second after, the growth (peak - before), and the throughput in MB/s (10^6 bytes a second, the
whole sequence of requests). The file size limit of ``POST /v1/files`` is raised to the upload's size through its
documented setting, ``TENANTGATE_FILES_MAX_BYTES`` (OpenAI's 512 MB by default).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.config import GATEWAY_VARIANTS
from bench.services import Process, free_port, memory_kb, process_tree, spawn_process, wait_listening
from bench.stack import Stack, StackOptions

MIB = 1024 * 1024
METHODS = ("files", "uploads")
_BLOCK = os.urandom(MIB)


@dataclass(frozen=True)
class Result:
    method: str
    bytes: int
    file_bytes: int
    """``bytes`` of the file the gateway answered with (== ``bytes`` when the upload went through whole)."""
    requests: int
    seconds: float
    mb_per_s: float
    rss_before_mb: float
    rss_peak_mb: float
    rss_after_mb: float

    @property
    def growth_mb(self) -> float:
        return round(self.rss_peak_mb - self.rss_before_mb, 1)


class _Sampler:
    """The largest VmRSS of a process tree, read every ``interval`` seconds on a thread of its own."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, _tree_kb(self.pid, "VmRSS"))
            self._stop.wait(self.interval)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _tree_kb(pid: int, field: str) -> int:
    return sum(memory_kb(p).get(field, 0) for p in process_tree(pid))


def _mb(kb: int) -> float:
    return round(kb / 1024, 1)


def _file_bytes(size: int) -> Iterator[bytes]:
    whole, rest = divmod(size, MIB)
    for _ in range(whole):
        yield _BLOCK
    if rest:
        yield _BLOCK[:rest]


class _Client:
    """Plain http.client: a streamed body with a Content-Length is sent as it is made, with no client-side copy."""

    def __init__(self, base_url: str, key: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port, self.prefix = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
        self.auth = {"Authorization": f"Bearer {key}"}

    def _send(self, path: str, body: bytes | Iterator[bytes], headers: dict[str, str]) -> dict[str, Any]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=600)
        try:
            connection.request("POST", self.prefix + path, body=body, headers={**self.auth, **headers})
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"POST {path}: {response.status} {raw[:500]!r}")
        answer = json.loads(raw)
        assert isinstance(answer, dict)
        return answer

    def post_json(self, path: str, payload: dict[str, object]) -> dict[str, Any]:
        return self._send(path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def post_form(self, path: str, fields: dict[str, str], file_field: str, size: int) -> dict[str, Any]:
        boundary = "tgbench" + secrets.token_hex(12)
        head = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n' for n, v in fields.items()
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="bench.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body() -> Iterator[bytes]:
            yield head.encode()
            yield from _file_bytes(size)
            yield tail

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head.encode()) + size + len(tail)),
        }
        return self._send(path, body(), headers)


def _upload(client: _Client, method: str, size: int, part_size: int) -> tuple[int, int]:
    """One upload by ``method``: (the answered file's bytes, requests sent)."""
    if method == "files":
        file = client.post_form("/files", {"purpose": "user_data"}, "file", size)
        return int(file["bytes"]), 1
    create = {"bytes": size, "filename": "bench.bin", "purpose": "user_data", "mime_type": "application/octet-stream"}
    upload_id = str(client.post_json("/uploads", create)["id"])
    part_ids = []
    for start in range(0, size, part_size):
        part = client.post_form(f"/uploads/{upload_id}/parts", {}, "data", min(part_size, size - start))
        part_ids.append(str(part["id"]))
    done = client.post_json(f"/uploads/{upload_id}/complete", {"part_ids": part_ids})
    file = done["file"]
    assert isinstance(file, dict) and done["status"] == "completed", done
    return int(file["bytes"]), len(part_ids) + 2


def _measure_one(client: _Client, pid: int, method: str, size: int, part_size: int, interval: float) -> Result:
    time.sleep(1)
    before = _tree_kb(pid, "VmRSS")
    hwm_before = _tree_kb(pid, "VmHWM")
    with _Sampler(pid, interval) as sampler:
        started = time.monotonic()
        file_bytes, requests = _upload(client, method, size, part_size)
        seconds = time.monotonic() - started
    hwm_after = _tree_kb(pid, "VmHWM")
    peak = max(sampler.peak_kb, hwm_after if hwm_after > hwm_before else 0)
    time.sleep(1)
    return Result(
        method=method,
        bytes=size,
        file_bytes=file_bytes,
        requests=requests,
        seconds=round(seconds, 2),
        mb_per_s=round(size / 1e6 / seconds, 1),
        rss_before_mb=_mb(before),
        rss_peak_mb=_mb(peak),
        rss_after_mb=_mb(_tree_kb(pid, "VmRSS")),
    )


def measure(
    size: int,
    part_size: int = 64 * MIB,
    *,
    methods: tuple[str, ...] = METHODS,
    interval: float = 0.05,
    upstream_port: int | None = None,
    postgres_server: str = StackOptions.postgres_server,
    redis_url: str = StackOptions.redis_url,
) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="tg-bench-upload-") as workdir:
        port = upstream_port or free_port()
        command = [sys.executable, "-m", "bench.discard_upstream", "--port", str(port)]
        upstream: Process = spawn_process("discard-upstream", command, ports=[port], log_dir=Path(workdir))
        try:
            wait_listening(upstream)
            options = StackOptions(
                variants=(GATEWAY_VARIANTS[0],),
                with_passthrough=False,
                postgres_server=postgres_server,
                redis_url=redis_url,
                extra_env={
                    "TENANTGATE_UPSTREAM_BASE_URL": f"http://127.0.0.1:{port}/v1",
                    "TENANTGATE_FILES_MAX_BYTES": str(max(size, 512 * 1024 * 1024)),
                },
            )
            with Stack(Path(workdir), options) as stack:
                contender = stack.contenders[GATEWAY_VARIANTS[0].name]
                client = _Client(contender.base_url, contender.key)
                pid = stack.gateways[contender.name].pid
                return [_measure_one(client, pid, m, size, part_size, interval) for m in methods]
        finally:
            upstream.stop()


def render(results: list[Result]) -> str:
    lines = [
        f"{'method':<9}{'MiB':>7}{'requests':>10}{'seconds':>9}{'MB/s':>8}"
        f"{'RSS before':>12}{'peak':>8}{'after':>8}{'growth':>8}  (MB)"
    ]
    for r in results:
        lines.append(
            f"{r.method:<9}{r.bytes / MIB:>7.0f}{r.requests:>10}{r.seconds:>9.2f}{r.mb_per_s:>8.1f}"
            f"{r.rss_before_mb:>12.1f}{r.rss_peak_mb:>8.1f}{r.rss_after_mb:>8.1f}{r.growth_mb:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upload", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="size of the file, MiB (default 1 GiB)")
    parser.add_argument("--part-mib", type=int, default=64, help="size of an upload part, MiB (OpenAI's largest: 64)")
    parser.add_argument("--methods", default=",".join(METHODS), help="files, uploads or both")
    parser.add_argument("--sample-ms", type=float, default=50)
    parser.add_argument("--upstream-port", type=int, default=None, help="the discarding upstream's (default: free)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TENANTGATE_BENCH_POSTGRES_URL", StackOptions.postgres_server),
        help="server URL, no database",
    )
    parser.add_argument("--redis-url", default=os.environ.get("TENANTGATE_BENCH_REDIS_URL", StackOptions.redis_url))
    args = parser.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not methods or set(methods) - set(METHODS):
        parser.error(f"--methods: one or more of {', '.join(METHODS)}")
    if args.mib < 1 or not 1 <= args.part_mib <= 64:
        parser.error("--mib must be at least 1 and --part-mib between 1 and 64")
    results = measure(
        args.mib * MIB,
        args.part_mib * MIB,
        methods=methods,
        interval=args.sample_ms / 1000,
        upstream_port=args.upstream_port,
        postgres_server=args.postgres_url,
        redis_url=args.redis_url,
    )
    if args.json:
        print(json.dumps([{**asdict(r), "growth_mb": r.growth_mb} for r in results], indent=2))
    else:
        print(render(results))
    return 0 if all(r.file_bytes == r.bytes for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
