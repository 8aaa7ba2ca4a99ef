"""One worker under unauthenticated resource attacks: is ``/healthz`` still quick, and its memory near normal?

    python -m bench.attacks [--seconds 20] [--header-mib 64] [--slow 200]

A ``tenantgate serve --workers 1`` on the benchmark's stack (bench/stack.py) first serves normal load (wrk, 32
connections, 5 s), which sets its normal peak memory (VmHWM). Then, for ``--seconds``, four clients send requests
whose one header is ``--header-mib`` MiB long, over and over, while ``--slow`` connections send a request head one
byte a second (and reconnect when the server closes them); meanwhile ``/healthz`` is asked every 100 ms on a fresh
connection and the worker's resident memory is read as often. Reports the probes' latency and the memory peak
during the attack against the issue's targets: ``/healthz`` under 100 ms, memory under the normal peak + 10%.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.config import GATEWAY_VARIANTS
from bench.load import run_wrk, write_bodies
from bench.services import memory_kb
from bench.stack import Stack, StackOptions


def _address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _big_headers(address: tuple[str, int], mib: int, stop: Any, counts: Any) -> None:
    """In its own process (the probe's timings must not wait for this client's GIL)."""
    chunk = b"a" * (1024 * 1024)
    while not stop.is_set():
        try:
            with socket.create_connection(address, timeout=5) as sock:
                sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ")
                for _ in range(mib):
                    sock.sendall(chunk)
                sock.sendall(b"\r\n\r\n")
                sock.recv(4096)
                with counts.get_lock():
                    counts[0] += 1
        except OSError:
            with counts.get_lock():
                counts[1] += 1  # cut off mid-send: the server answered 431 and stopped reading, as it should


def _slow_connections(address: tuple[str, int], count: int, stop: Any) -> None:
    local_stop = threading.Event()
    threads = [threading.Thread(target=_slow_connection, args=(address, local_stop), daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    stop.wait()
    local_stop.set()


def _slow_connection(address: tuple[str, int], stop: Any) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"b" * 4096
    while not stop.is_set():
        try:
            with socket.create_connection(address, timeout=5) as sock:
                for byte in head:
                    if stop.is_set():
                        return
                    sock.sendall(bytes([byte]))
                    time.sleep(1)
        except OSError:
            time.sleep(0.1)


def _probe(address: tuple[str, int]) -> float:
    started = time.perf_counter()
    try:
        with socket.create_connection(address, timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass
    except OSError:
        return float("inf")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--header-mib", type=int, default=64)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--postgres-url", default=StackOptions.postgres_server)
    parser.add_argument("--redis-url", default=StackOptions.redis_url)
    args = parser.parse_args(argv)
    variant = GATEWAY_VARIANTS[0]
    options = StackOptions(
        variants=(variant,), with_passthrough=False, postgres_server=args.postgres_url, redis_url=args.redis_url
    )
    with tempfile.TemporaryDirectory(prefix="tg-bench-attacks-") as workdir, Stack(Path(workdir), options) as stack:
        contender = stack.contenders[variant.name]
        pid = contender.processes[0].pid
        bodies = write_bodies(Path(workdir))
        load = run_wrk(
            contender.chat_url, key=contender.key, body_file=bodies[False], stream=False, connections=32, seconds=5
        )
        normal_peak = memory_kb(pid).get("VmHWM", 0) / 1024
        address = _address(contender.base_url)
        context = multiprocessing.get_context("fork")
        stop = context.Event()
        sent = context.Array("i", 2)
        attackers = [
            context.Process(target=_big_headers, args=(address, args.header_mib, stop, sent)) for _ in range(4)
        ]
        attackers.append(context.Process(target=_slow_connections, args=(address, args.slow, stop)))
        for attacker in attackers:
            attacker.daemon = True
            attacker.start()
        probes: list[float] = []
        rss: list[float] = []
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            probes.append(_probe(address))
            rss.append(memory_kb(pid).get("VmRSS", 0) / 1024)
            time.sleep(0.1)
        stop.set()
        for attacker in attackers:
            attacker.join(timeout=10)
        attack_peak = max(rss)
    probes_ms = sorted(p * 1000 for p in probes)
    p99 = probes_ms[min(len(probes_ms) - 1, int(len(probes_ms) * 0.99))]
    print(f"normal load: {load.rps:,.0f} req/s; worker peak RSS {normal_peak:.1f} MB")
    print(
        f"under attack ({args.seconds} s; 4 clients sending {args.header_mib} MiB headers, {sent[0]} answered, "
        f"{sent[1]} cut off; {args.slow} slow connections):"
    )
    print(
        f"  /healthz probes: {len(probes_ms)}, p50 {statistics.median(probes_ms):.1f} ms, p99 {p99:.1f} ms, "
        f"max {probes_ms[-1]:.1f} ms"
    )
    print(f"  worker RSS: max {attack_peak:.1f} MB ({attack_peak / normal_peak * 100 - 100:+.1f}% of the normal peak)")
    healthz_ok = probes_ms[-1] < 100
    memory_ok = attack_peak <= normal_peak * 1.10
    print(f"  [{'MET ' if healthz_ok else 'MISS'}] /healthz under 100 ms throughout (max {probes_ms[-1]:.1f} ms)")
    print(f"  [{'MET ' if memory_ok else 'MISS'}] memory under the normal peak + 10%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
