"""Run the benchmark: ``python -m bench.run`` (or ``bench/run``), ``--quick`` for a smoke test of a few seconds.

Contenders, alternated within each case and round: the canned upstream hit directly, the naive passthrough, and
each tenantgate variant (see bench/config.py). Cases: non-streamed and streamed chat completions at 1 and 32
connections, wrk with one thread. Writes bench/results/bench-<stamp>.json (and latest.json) and a PNG chart, and
prints the summary table and the issue's targets.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import chart, config, machine, metering, report
from bench.config import FULL, PASSTHROUGH, QUICK, Timing
from bench.load import WrkResult, run_wrk, write_bodies, wrk_path
from bench.services import StartupError
from bench.stack import REPO, Stack, StackOptions
from bench.usage_check import check_usage

RESULTS_DIR = REPO / "bench" / "results"
SHARED_WARNING_CORES = 0.2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per case: a smoke test, not a measurement")
    parser.add_argument("--seconds", type=int, help=f"measured seconds per run (default {FULL.seconds})")
    parser.add_argument("--warmup", type=int, help=f"warm-up seconds before each run (default {FULL.warmup_seconds})")
    parser.add_argument("--rounds", type=int, help=f"rounds of every case (default {FULL.rounds}); medians reported")
    parser.add_argument("--contenders", default=",".join(config.CONTENDERS), help="comma-separated subset")
    parser.add_argument("--modes", default=",".join(config.MODES), help="json, stream")
    parser.add_argument("--connections", default=",".join(map(str, config.CONNECTIONS)))
    parser.add_argument("--upstream", choices=("auto", "nginx", "asyncio"), default="auto")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TENANTGATE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432"),
        help="server where the run creates (and afterwards drops) its own database",
    )
    parser.add_argument("--redis-url", default=os.environ.get("TENANTGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--usage-table", help="the usage table to check, if it cannot be detected")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the database, Redis keys and the temp dir")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument(
        "--profile",
        type=int,
        metavar="SECONDS",
        help="instead of the benchmark: profile tenantgate with py-spy under load for SECONDS",
    )
    parser.add_argument(
        "--profile-connections", type=int, default=32, help="wrk connections while profiling (default 32)"
    )
    parser.add_argument("--profile-traced", action="store_true", help="profile the 100%%-traced variant")
    parser.add_argument("--profile-stream", action="store_true", help="profile under streamed chat completions")
    return parser.parse_args(argv)


def timing_of(args: argparse.Namespace) -> Timing:
    base = QUICK if args.quick else FULL
    return Timing(
        seconds=args.seconds or base.seconds,
        warmup_seconds=base.warmup_seconds if args.warmup is None else args.warmup,
        rounds=args.rounds or base.rounds,
    )


def run_cases(
    stack: Stack,
    names: list[str],
    modes: list[str],
    connections: list[int],
    timing: Timing,
    successes: dict[str, int],
) -> list[dict[str, Any]]:
    bodies = write_bodies(stack.workdir)
    wrk_log = stack.workdir / "wrk.log"
    cases = []
    for name in names:
        contender = stack.contenders[name]
        for stream in (False, True):
            warm = run_wrk(
                contender.chat_url,
                seconds=max(timing.startup_warmup_seconds // 2, 1),
                key=contender.key,
                body_file=bodies[stream],
                stream=stream,
                connections=8,
                log=wrk_log,
            )
            successes[name] += warm.successes
    for mode in modes:
        for conns in connections:
            for round_no in range(timing.rounds):
                # Rotate the order every round so no contender always runs first (or right after another).
                order = names[round_no % len(names) :] + names[: round_no % len(names)]
                for name in order:
                    contender = stack.contenders[name]
                    kwargs: dict[str, Any] = {
                        "key": contender.key,
                        "body_file": bodies[mode == "stream"],
                        "stream": mode == "stream",
                        "connections": conns,
                        "log": wrk_log,
                    }
                    if timing.warmup_seconds:
                        warm = run_wrk(contender.chat_url, seconds=timing.warmup_seconds, **kwargs)
                        successes[name] += warm.successes
                    result: WrkResult = run_wrk(contender.chat_url, seconds=timing.seconds, **kwargs)
                    successes[name] += result.successes
                    stack.peak_rss_mb()  # each phase's peak is kept (see Process.peak_rss_mb)
                    errors = result.non_2xx + result.socket_errors
                    print(
                        f"  {mode:<6} c={conns:<3} round {round_no + 1}/{timing.rounds}  {name:<18} "
                        f"{result.rps:>8.0f} req/s  p50 {result.latency_ms['p50']:.3f} ms  "
                        f"p99 {result.latency_ms['p99']:.3f} ms" + (f"  ERRORS {errors}" if errors else ""),
                        flush=True,
                    )
                    cases.append(
                        {
                            "mode": mode,
                            "connections": conns,
                            "round": round_no + 1,
                            "contender": name,
                            "wrk": result.to_json(),
                        }
                    )
    return cases


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        from bench.profile import profile

        return profile(args)
    try:
        return _benchmark(args, argv)
    except (StartupError, RuntimeError, OSError, subprocess.CalledProcessError) as error:
        detail = error.stderr.decode(errors="replace") if isinstance(error, subprocess.CalledProcessError) else ""
        print(f"bench: {error}\n{detail}".rstrip(), file=sys.stderr)
        return 1


def _benchmark(args: argparse.Namespace, argv: list[str] | None) -> int:
    wrk_path()
    timing = timing_of(args)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = set(names) - set(config.CONTENDERS)
    if unknown:
        print(f"unknown contenders {sorted(unknown)}; known: {', '.join(config.CONTENDERS)}", file=sys.stderr)
        return 2
    modes = [m.strip() for m in args.modes.split(",")]
    connections = [int(c) for c in args.connections.split(",")]
    variants = tuple(v for v in config.GATEWAY_VARIANTS if v.name in names)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    workdir = Path(tempfile.mkdtemp(prefix="tg-bench-"))
    about = machine.describe()
    options = StackOptions(
        variants=variants,
        with_passthrough=PASSTHROUGH in names,
        upstream_kind=args.upstream,
        postgres_server=args.postgres_url.rstrip("/"),
        redis_url=args.redis_url,
        keep=args.keep,
    )
    per_case = timing.rounds * (timing.seconds + timing.warmup_seconds)
    print(
        f"tenantgate benchmark ({'quick' if args.quick else 'full'}): {len(names)} contenders x {len(modes)} modes x "
        f"{len(connections)} connection counts, {timing.rounds} round(s) of {timing.seconds} s "
        f"(+{timing.warmup_seconds} s warm-up): about {len(names) * len(modes) * len(connections) * per_case} s "
        f"of load. Logs in {workdir}",
        flush=True,
    )
    try:
        with Stack(workdir, options) as stack:
            assert stack.upstream is not None and stack.sink is not None
            print(f"  canned upstream: {stack.upstream.kind}; tenantgate database: {stack.db_name}", flush=True)
            successes = {name: 2 for name in names}  # the preflight's two requests
            watch = machine.CpuWatch().start()
            cases = run_cases(stack, names, modes, connections, timing, successes)
            cpu = watch.stop()
            rss = stack.peak_rss_mb()
            exit_codes = stack.stop_gateways()
            counts = stack.upstream.counts()
            expected = {
                v.name: {
                    "tenant_id": stack.contenders[v.name].tenant_id,
                    "upstream_200": counts[v.name]["json"] + counts[v.name]["sse"],
                    "client_2xx": successes[v.name],
                }
                for v in variants
            }
            if variants:
                dsn = f"{options.postgres_server}/{stack.db_name}"
                usage = check_usage(dsn, expected, override=args.usage_table)
            else:
                usage = {"status": "skipped", "reason": "no tenantgate variant in this run"}
            telemetry = stack.sink.stats()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = report.summarise(cases)
    gateway_rss = {v.name: max(rss[v.name].values(), default=0.0) for v in variants}
    results: dict[str, Any] = {
        "schema": report.SCHEMA,
        "started_at": started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join([Path(sys.executable).name, "-m", "bench.run", *(argv or sys.argv[1:])]),
        "revision": machine.git_revision(REPO),
        "quick": args.quick,
        "machine": about,
        "timing": {
            "seconds": timing.seconds,
            "warmup_seconds": timing.warmup_seconds,
            "rounds": timing.rounds,
            "startup_warmup_seconds": timing.startup_warmup_seconds,
        },
        "feature_env": config.FEATURE_ENV,
        "variants": {v.name: v.env for v in variants},
        "cases": cases,
        "summary": summary,
        "peak_rss_mb": rss,
        "gateway_exit_codes": exit_codes,
        "upstream_counts": counts,
        "usage_check": usage,
        "telemetry_received": telemetry,
        "cpu": cpu,
    }
    results["targets"] = report.judge(summary, gateway_rss, usage)
    path = report.write(results, args.results_dir, stamp)
    print()
    print(report.table(summary))
    print(
        "\nPeak RSS (MB, per process): "
        + "; ".join(f"{name} {', '.join(f'{v:.0f}' for v in values.values())}" for name, values in rss.items())
    )
    print(f"OTLP receiver got: {telemetry or 'nothing (no telemetry exported by this build)'}")
    print(_usage_text(usage))
    print(
        f"CPU during the load ({cpu['window_seconds']} s): machine {cpu['machine_busy_cores']} cores busy; "
        f"benchmark {cpu['benchmark_cores']}, postgres+redis {cpu['postgres_redis_cores']}, "
        f"other processes {cpu['other_processes_cores']} {cpu['top_other_processes'] or ''}"
    )
    if cpu["other_processes_cores"] >= SHARED_WARNING_CORES:
        print(
            f"WARNING: other processes used {cpu['other_processes_cores']} of {about['cpus']} cores during the load; "
            "the machine was shared and these figures are noisier and lower than on a quiet machine."
        )
    print("\nTargets (issue 9):\n" + report.targets_text(results["targets"]))
    print(f"\nMetering write/query benchmark: {metering.status()}")
    if args.quick:
        print("\n--quick: runs of a second or two are a smoke test; do not quote these numbers.")
    print(f"\nResults: {path}")
    if not args.no_chart:
        try:
            print(f"Chart:   {chart.draw(results, path.with_suffix('.png'))}")
        except ImportError:
            print("Chart:   skipped (matplotlib is not installed: pip install -e '.[bench]')")
    missed = [t for t in results["targets"] if t["met"] is False]
    return 1 if args.strict and missed else 0


def _usage_text(usage: dict[str, Any]) -> str:
    if usage["status"] == "skipped":
        return f"Usage check: SKIPPED - {usage['reason']}"
    parts = [
        f"{name}: {v['events']} events for {v['upstream_200']} upstream 200s ({v['client_2xx']} seen by wrk), "
        f"lost {v['lost']}, extra {v['extra']}, duplicate request ids {v['duplicate_request_ids']}"
        for name, v in usage["variants"].items()
    ]
    return f"Usage check ({usage['table']}): {usage['status'].upper()} - " + "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
