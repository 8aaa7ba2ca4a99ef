"""Memory of one tenantgate worker, phase by phase, for sizing a deployment.

    python -m bench.memory [--seconds 10] [--connections 32] [--estimates tiktoken,heuristic]

For each token-estimate mode (``TENANTGATE_TOKEN_ESTIMATES``), one ``tenantgate serve --workers 1`` is started on the
benchmark's own stack (PostgreSQL, Redis limits, durable metering, OTel with 10% of traces sampled; bench/stack.py),
and its resident memory (VmRSS) and peak (the largest VmHWM read so far) are read from /proc after start and the two
preflight requests, then after each of two rounds of ``--seconds`` of non-streamed load at ``--connections``, then
once more streamed. Memory does not depend on the machine's speed as throughput does, so these figures carry across
machines better than bench.run's; the peak after the last phase is what bench.run reports as "peak RSS".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.config import GATEWAY_VARIANTS, GatewayVariant
from bench.load import run_wrk, write_bodies
from bench.services import memory_kb
from bench.stack import Stack, StackOptions

ESTIMATES = ("tiktoken", "heuristic")


@dataclass(frozen=True)
class Reading:
    phase: str
    rss_mb: float
    peak_mb: float
    rps: float | None = None


def _read(pid: int, phase: str, rps: float | None = None, *, after: Reading | None = None) -> Reading:
    """The worker's memory now; the peak is never below ``after``'s (why: bench.services.Process.peak_rss_mb)."""
    memory = memory_kb(pid)
    peak = round(memory.get("VmHWM", 0) / 1024, 1)
    return Reading(phase, round(memory.get("VmRSS", 0) / 1024, 1), max(peak, after.peak_mb if after else 0.0), rps)


def measure(
    estimates: str,
    seconds: int,
    connections: int,
    *,
    postgres_server: str = StackOptions.postgres_server,
    redis_url: str = StackOptions.redis_url,
) -> list[Reading]:
    base = GATEWAY_VARIANTS[0]
    variant = GatewayVariant(base.name, base.label, {**base.env, "TENANTGATE_TOKEN_ESTIMATES": estimates})
    options = StackOptions(
        variants=(variant,), with_passthrough=False, postgres_server=postgres_server, redis_url=redis_url
    )
    with tempfile.TemporaryDirectory(prefix="tg-bench-memory-") as workdir, Stack(Path(workdir), options) as stack:
        contender = stack.contenders[variant.name]
        pid = contender.processes[0].pid
        bodies = write_bodies(Path(workdir))
        time.sleep(1)
        readings = [_read(pid, "started, 2 requests served")]
        phases = [("plain", False), ("plain", False), ("streamed", True)]
        for number, (label, stream) in enumerate(phases, start=1):
            result = run_wrk(
                contender.chat_url,
                key=contender.key,
                body_file=bodies[stream],
                stream=stream,
                connections=connections,
                seconds=seconds,
            )
            if result.successes == 0 or result.socket_errors:
                raise RuntimeError(f"load phase {number} failed: {result}")
            phase = f"after {seconds} s {label} at {connections} connections"
            readings.append(_read(pid, phase, result.rps, after=readings[-1]))
    return readings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--estimates", default=",".join(ESTIMATES), help="comma-separated modes to measure")
    parser.add_argument("--postgres-url", default=StackOptions.postgres_server, help="server URL, no database")
    parser.add_argument("--redis-url", default=StackOptions.redis_url)
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.estimates.split(",") if m.strip()]
    unknown = set(modes) - set(ESTIMATES)
    if unknown:
        parser.error(f"unknown estimate mode(s): {', '.join(sorted(unknown))}")
    print(f"{'TENANTGATE_TOKEN_ESTIMATES':<27}{'phase':<42}{'req/s':>8}{'RSS MB':>9}{'peak MB':>9}")
    for mode in modes:
        readings = measure(
            mode, args.seconds, args.connections, postgres_server=args.postgres_url, redis_url=args.redis_url
        )
        for reading in readings:
            rps = f"{reading.rps:,.0f}" if reading.rps is not None else ""
            print(f"{mode:<27}{reading.phase:<42}{rps:>8}{reading.rss_mb:>9.1f}{reading.peak_mb:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
