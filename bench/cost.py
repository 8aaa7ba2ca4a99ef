"""CPU per request: what each contender's server process spends on one request, and which feature costs what.

    python -m bench.cost [--seconds 8] [--connections 32] [--stream] [--refused]

Throughput on a shared 2-core machine moves with whatever else runs; the CPU time the server process itself
consumed (utime + stime from /proc) divided by the requests it answered moves much less, so this is the number to
compare before and after a change on the request path. One worker can serve at most 1 / (CPU per request)
requests a second, so the ratio of two contenders' CPU per request approximates the inverse of their throughput
ratio when the server is the bottleneck (it is at 32 connections).

Contenders: the naive passthrough, tenantgate as in production (10% traced), and tenantgate with one feature taken
away at a time (tracing, metrics, Redis limits), so the difference to production is that feature's cost, and
with aiohttp as the upstream client (the naive passthrough's), so the difference is the lean client's gain. They run
one after another, each against its own canned upstream port, after a warm-up.

``--refused`` also runs each tenantgate contender with a key over its RPM (every request but the first refused with
a 429), so the two rows compare a refusal's CPU with a served request's. Back-pressure is off for the whole run
(``TENANTGATE_REFUSAL_DELAY_SECONDS=0``): it would hold most refusals back and measure the wait, not the work.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.config import PASSTHROUGH, GatewayVariant
from bench.load import run_wrk, write_bodies
from bench.machine import _cpu_seconds
from bench.stack import Contender, Stack, StackOptions, _request

VARIANTS = (
    GatewayVariant("tg", "tenantgate, 10% traced", {"OTEL_TRACES_SAMPLER_ARG": "0.1"}),
    GatewayVariant("tg-traced", "tenantgate, 100% traced", {"OTEL_TRACES_SAMPLER_ARG": "1.0"}),
    GatewayVariant(
        "tg-no-tracing",
        "tenantgate, tracing off",
        {"TENANTGATE_TRACING_ENABLED": "false", "OTEL_TRACES_SAMPLER_ARG": "0"},
    ),
    GatewayVariant(
        "tg-no-metrics",
        "tenantgate, metrics off",
        {"TENANTGATE_METRICS_ENABLED": "false", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    ),
    GatewayVariant(
        "tg-aiohttp",
        "tenantgate, upstream via aiohttp",
        {"TENANTGATE_UPSTREAM_HTTP_CLIENT": "aiohttp", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    ),
    GatewayVariant(
        "tg-memory-limits",
        "tenantgate, limits in memory",
        {"TENANTGATE_REDIS_URL": "", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    ),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated contender names (default: all)")
    parser.add_argument("--refused", action="store_true", help="also measure requests refused over their RPM")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    variants = tuple(v for v in VARIANTS if not only or v.name in only)
    workdir = Path(tempfile.mkdtemp(prefix="tg-bench-cost-"))
    options = StackOptions(
        variants=variants,
        with_passthrough=not only or PASSTHROUGH in only,
        postgres_server=args.postgres_url,
        redis_url=args.redis_url,
        extra_env={"TENANTGATE_REFUSAL_DELAY_SECONDS": "0"} if args.refused else {},
    )
    bodies = write_bodies(workdir)
    with Stack(workdir, options) as stack:
        names = [n for n in stack.contenders if n != "direct"]
        print(f"{'contender':<34} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>11} {'CPU share':>10}")
        runs: list[tuple[str, str, str]] = []
        for name in names:
            runs.append((name, stack.contenders[name].key, ""))
            if args.refused and name != PASSTHROUGH:
                runs.append((name, _over_limit_key(stack, stack.contenders[name]), ", refused"))
        for name, key, suffix in runs:
            contender = stack.contenders[name]
            pid = contender.processes[0].pid
            common = {"key": key, "body_file": bodies[args.stream], "stream": args.stream}
            run_wrk(contender.chat_url, connections=args.connections, seconds=2, **common)  # warm-up
            cpu0, t0 = _cpu_seconds(pid), time.monotonic()
            result = run_wrk(contender.chat_url, connections=args.connections, seconds=args.seconds, **common)
            cpu, wall = _cpu_seconds(pid) - cpu0, time.monotonic() - t0
            process = contender.processes[0]
            if process.popen.poll() is not None:
                raise SystemExit(f"{name} exited during the run ({process.popen.returncode}):\n{process.log_tail()}")
            label = next((v.label for v in variants if v.name == name), name) + suffix
            per_request_us = cpu / max(result.requests, 1) * 1e6
            p50, p99 = result.latency_ms["p50"], result.latency_ms["p99"]
            print(
                f"{label:<34} {result.rps:>8.0f} {p50:>7.2f} {p99:>7.2f} {per_request_us:>11.0f} {cpu / wall:>10.2f}",
                flush=True,
            )


def _over_limit_key(stack: Stack, contender: Contender) -> str:
    """A key of the contender's tenant allowed one request a minute."""
    root = contender.base_url.removesuffix("/v1")
    auth = {"Authorization": f"Bearer {stack.admin_token}"}
    path = f"/admin/tenants/{contender.tenant_id}/keys"
    status, raw = _request(root + path, body={"name": "over-limit", "rpm": 1}, headers=auth)
    if status != 201:
        raise RuntimeError(f"creating the over-limit key of {contender.name} failed: {status} {raw[:500]!r}")
    key: str = json.loads(raw)["key"]
    return key


if __name__ == "__main__":
    main()
