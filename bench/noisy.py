"""Noisy neighbour: what one tenant's flood does to another tenant's requests on the same worker.

    python -m bench.noisy [--seconds 5] [--rounds 3] [--setups postgres,embedded] [--flood-connections 64]

For each setup, one ``tenantgate serve --workers 1`` (as in production, 10% traced) with three tenants: the quiet
one, a flood held to ``FLOOD_RPM`` requests a minute (most of its requests are refused with 429), and an unlimited
flood. Setups: PostgreSQL + Redis, and the embedded default (SQLite file, limits in memory). Cases, non-streamed:

- ``alone c=1`` and ``alone c=32``: the quiet tenant's load with nothing beside it (the tail rows: SQLite against
  Postgres at 1 and 32 connections), the setups taking turns for ``--rounds`` rounds, medians reported;
- ``over-limit flood``: the quiet tenant at 1 connection while the RPM-limited tenant floods with
  ``--flood-connections``; the flood starts first and ends last, so every quiet request has it beside it;
- ``unlimited flood``: the same with the unlimited tenant flooding.

Reported per case: the quiet tenant's req/s, p50 and p99, and the flood's req/s and how many of its answers were
refusals (non-2xx). Results go to ``bench/results/noisy-<stamp>.json`` (``validate`` checks their shape).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import GatewayVariant
from bench.load import WrkResult, run_wrk, write_bodies
from bench.stack import Contender, Stack, StackOptions

RESULTS = Path(__file__).with_name("results")
FLOOD_RPM = 600
SETUPS = (
    GatewayVariant("postgres", "Postgres + Redis", {"OTEL_TRACES_SAMPLER_ARG": "0.1"}),
    GatewayVariant("embedded", "embedded (SQLite, limits in memory)", {"OTEL_TRACES_SAMPLER_ARG": "0.1"}, True),
)
ALONE = ("alone c=1", "alone c=32")
FLOODS = {"over-limit flood": "limited", "unlimited flood": "unlimited"}
CASES = (*ALONE, *FLOODS)


@dataclass(frozen=True)
class Keys:
    quiet: str
    limited: str
    unlimited: str


def _quiet_row(result: WrkResult) -> dict[str, Any]:
    return {
        "rps": result.rps,
        "p50_ms": result.latency_ms["p50"],
        "p99_ms": result.latency_ms["p99"],
        "requests": result.requests,
        "errors": result.non_2xx + result.socket_errors,
    }


def _flood_row(result: WrkResult) -> dict[str, Any]:
    return {"rps": result.rps, "requests": result.requests, "refused": result.non_2xx, "errors": result.socket_errors}


def _beside_flood(
    contender: Contender, quiet_key: str, flood_key: str, body: Path, seconds: int, connections: int, lead: int
) -> tuple[WrkResult, WrkResult]:
    """The quiet tenant's load at 1 connection inside a longer flood: the flood starts ``lead`` seconds before and
    ends ``lead`` seconds after it."""
    flood: list[WrkResult | BaseException] = []

    def run_flood() -> None:
        try:
            flood.append(
                run_wrk(
                    contender.chat_url,
                    key=flood_key,
                    body_file=body,
                    stream=False,
                    connections=connections,
                    seconds=seconds + 2 * lead,
                )
            )
        except BaseException as error:  # re-raised in the caller's thread
            flood.append(error)

    thread = threading.Thread(target=run_flood, name="noisy-flood")
    thread.start()
    time.sleep(lead)
    try:
        quiet = run_wrk(contender.chat_url, key=quiet_key, body_file=body, stream=False, connections=1, seconds=seconds)
    finally:
        thread.join()
    if isinstance(flood[0], BaseException):
        raise flood[0]
    return quiet, flood[0]


def _prepare(stack: Stack, name: str, *, flood_rpm: int, body: Path, warmup: int) -> Keys:
    """The setup's flooding tenants, and a warm-up: one-time work after a start (tokenizer loading, first-use
    caches) is not what the cases measure."""
    contender = stack.contenders[name]
    assert contender.key
    keys = Keys(
        quiet=contender.key,
        limited=stack.create_tenant(contender, f"noisy-limited-{name}", rpm=flood_rpm)[1],
        unlimited=stack.create_tenant(contender, f"noisy-unlimited-{name}")[1],
    )
    if warmup:
        run_wrk(contender.chat_url, key=keys.quiet, body_file=body, stream=False, connections=8, seconds=warmup)
    return keys


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    quiet = {name: statistics.median(r["quiet"][name] for r in rows) for name in ("rps", "p50_ms", "p99_ms")}
    quiet["requests"] = sum(r["quiet"]["requests"] for r in rows)
    quiet["errors"] = sum(r["quiet"]["errors"] for r in rows)
    return {"quiet": quiet, "flood": None, "load": statistics.median(r["load"] for r in rows), "rounds": len(rows)}


def _check_alive(stack: Stack, name: str) -> None:
    process = stack.contenders[name].processes[0]
    if process.popen.poll() is not None:
        raise RuntimeError(f"{name} exited during the run ({process.popen.returncode}):\n{process.log_tail()}")


def run(
    *,
    seconds: int,
    rounds: int = 3,
    setups: tuple[GatewayVariant, ...] = SETUPS,
    flood_connections: int = 64,
    flood_rpm: int = FLOOD_RPM,
    postgres_server: str = "postgresql://postgres@127.0.0.1:5432",
    redis_url: str = "redis://127.0.0.1:6379/0",
    workdir: Path | None = None,
    lead: int = 1,
    warmup: int | None = None,
) -> dict[str, Any]:
    """``lead``: the seconds each flood runs before and after the quiet tenant's load; ``warmup``: the seconds of
    load each setup gets before the cases (default: ``seconds``, at most 2). The harness's own test runs with none
    of either: it checks the plumbing, not the numbers."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="tg-bench-noisy-"))
    options = StackOptions(
        variants=setups, with_passthrough=False, postgres_server=postgres_server, redis_url=redis_url
    )
    body = write_bodies(workdir)[False]
    results: dict[str, Any] = {
        "seconds": seconds,
        "rounds": rounds,
        "flood_connections": flood_connections,
        "flood_rpm": flood_rpm,
        "cpus": os.cpu_count(),
        "setups": {setup.name: {"label": setup.label, "cases": {}} for setup in setups},
    }
    with Stack(workdir, options) as stack:
        warm = min(seconds, 2) if warmup is None else warmup
        keys = {s.name: _prepare(stack, s.name, flood_rpm=flood_rpm, body=body, warmup=warm) for s in setups}
        # The tail rows compare the setups, so they take turns, the order rotating each round (a shared machine's
        # load moves by the minute); medians over rounds. One setup at a time: the other one idles meanwhile.
        alone: dict[tuple[str, str], list[dict[str, Any]]] = {}
        names = [s.name for s in setups]
        for round_ in range(rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                contender = stack.contenders[name]
                for case, connections in zip(ALONE, (1, 32), strict=True):
                    load = os.getloadavg()[0]
                    result = run_wrk(
                        contender.chat_url,
                        key=keys[name].quiet,
                        body_file=body,
                        stream=False,
                        connections=connections,
                        seconds=seconds,
                    )
                    alone.setdefault((name, case), []).append({"quiet": _quiet_row(result), "load": load})
        for (name, case), rows in alone.items():
            results["setups"][name]["cases"][case] = _median_row(rows)
        for name in names:
            for case, which in FLOODS.items():
                load = os.getloadavg()[0]
                flood_key = keys[name].limited if which == "limited" else keys[name].unlimited
                quiet, flood = _beside_flood(
                    stack.contenders[name], keys[name].quiet, flood_key, body, seconds, flood_connections, lead
                )
                row = {"quiet": _quiet_row(quiet), "flood": _flood_row(flood), "load": load, "rounds": 1}
                results["setups"][name]["cases"][case] = row
            _check_alive(stack, name)
    return results


def validate(results: dict[str, Any]) -> None:
    """Raise ValueError unless ``results`` has every case of every setup, with numbers where numbers belong."""
    if not results.get("setups"):
        raise ValueError("no setup measured")
    for name, setup in results["setups"].items():
        if set(setup["cases"]) != set(CASES):
            raise ValueError(f"{name}: cases {sorted(setup['cases'])}, expected {sorted(CASES)}")
        for case, row in setup["cases"].items():
            quiet = row["quiet"]
            if not (quiet["rps"] > 0 and 0 < quiet["p50_ms"] <= quiet["p99_ms"]):
                raise ValueError(f"{name} {case}: the quiet tenant's numbers are not a measurement: {quiet}")
            if (row["flood"] is None) != (case in ALONE):
                raise ValueError(f"{name} {case}: a flood row only beside a flood")
            if row["flood"] is not None and not row["flood"]["requests"] > 0:
                raise ValueError(f"{name} {case}: the flood sent nothing: {row['flood']}")


def render(results: dict[str, Any]) -> str:
    header = f"{'setup':<10} {'case':<17} {'quiet req/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'flood req/s':>11}"
    header += f" {'refused':>8} {'load':>5}"
    lines = [header]
    for name, setup in results["setups"].items():
        for case in CASES:
            row = setup["cases"][case]
            quiet, flood = row["quiet"], row["flood"]
            flood_rps = "" if flood is None else f"{flood['rps']:.0f}"
            refused = "" if flood is None else f"{flood['refused'] / max(flood['requests'], 1):.0%}"
            lines.append(
                f"{name:<10} {case:<17} {quiet['rps']:>11.0f} {quiet['p50_ms']:>8.2f} {quiet['p99_ms']:>8.2f}"
                f" {flood_rps:>11} {refused:>8} {row['load']:>5.2f}"
            )
    setups = results["setups"]
    if {"postgres", "embedded"} <= setups.keys():
        lines.append("")
        for case in ALONE:
            pg, sq = setups["postgres"]["cases"][case]["quiet"], setups["embedded"]["cases"][case]["quiet"]
            p50, p99, rps = sq["p50_ms"] / pg["p50_ms"], sq["p99_ms"] / pg["p99_ms"], sq["rps"] / pg["rps"]
            lines.append(f"SQLite/Postgres {case}: p50 {p50:.2f}x, p99 {p99:.2f}x, req/s {rps:.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the tail rows (medians are reported)")
    parser.add_argument("--setups", default=",".join(s.name for s in SETUPS))
    parser.add_argument("--flood-connections", type=int, default=64)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TENANTGATE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("TENANTGATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    wanted = set(args.setups.split(","))
    setups = tuple(s for s in SETUPS if s.name in wanted)
    if not setups:
        parser.error(f"--setups: choose from {', '.join(s.name for s in SETUPS)}")
    results = run(
        seconds=args.seconds,
        rounds=args.rounds,
        setups=setups,
        flood_connections=args.flood_connections,
        postgres_server=args.postgres_url,
        redis_url=args.redis_url,
    )
    validate(results)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"noisy-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(render(results))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
