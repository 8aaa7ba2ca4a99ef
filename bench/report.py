"""Turn the measured cases into the summary the issue asks for, judge the targets, print and write the results."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.config import DIRECT, FULLY_TRACED, LABELS, PASSTHROUGH, PRIMARY

SCHEMA = "tenantgate-bench/1"
RSS_LIMIT_MB = 120.0


def summarise(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (mode, connections, contender): medians over the rounds, compared with direct and passthrough."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for case in cases:
        groups.setdefault((case["mode"], case["connections"], case["contender"]), []).append(case["wrk"])
    rows = []
    for (mode, connections, contender), runs in groups.items():
        rows.append(
            {
                "mode": mode,
                "connections": connections,
                "contender": contender,
                "rounds": len(runs),
                "rps": round(statistics.median(r["rps"] for r in runs), 1),
                "rps_rounds": [r["rps"] for r in runs],
                "p50_ms": round(statistics.median(r["latency_ms"]["p50"] for r in runs), 3),
                "p99_ms": round(statistics.median(r["latency_ms"]["p99"] for r in runs), 3),
                "requests": sum(r["requests"] for r in runs),
                "non_2xx": sum(r["non_2xx"] for r in runs),
                "socket_errors": sum(r["socket_errors"] for r in runs),
            }
        )
    index = {(r["mode"], r["connections"], r["contender"]): r for r in rows}
    for row in rows:
        direct = index.get((row["mode"], row["connections"], DIRECT))
        passthrough = index.get((row["mode"], row["connections"], PASSTHROUGH))
        row["added_p50_ms"] = round(row["p50_ms"] - direct["p50_ms"], 3) if direct else None
        row["added_p99_ms"] = round(row["p99_ms"] - direct["p99_ms"], 3) if direct else None
        is_gateway = row["contender"] not in (DIRECT, PASSTHROUGH)
        row["ratio_to_passthrough"] = (
            round(row["rps"] / passthrough["rps"], 3) if is_gateway and passthrough and passthrough["rps"] else None
        )
    order = {name: i for i, name in enumerate(LABELS)}
    rows.sort(key=lambda r: (r["mode"], r["connections"], order.get(r["contender"], 99)))
    return rows


def _find(rows: list[dict[str, Any]], mode: str, connections: int, contender: str) -> dict[str, Any] | None:
    return next(
        (r for r in rows if (r["mode"], r["connections"], r["contender"]) == (mode, connections, contender)), None
    )


def judge(rows: list[dict[str, Any]], peak_rss: dict[str, float], usage: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with what was measured; met is None when this run could not measure it."""
    targets = []

    def ratio(name: str, mode: str, contender: str, bar: float) -> None:
        row = _find(rows, mode, 32, contender)
        value = row["ratio_to_passthrough"] if row else None
        met = None if value is None else value >= bar
        targets.append({"target": name, "measured": value, "bar": f">= {bar:.0%}", "met": met})

    ratio("non-streamed, 32 connections, 10% traced: share of passthrough req/s", "json", PRIMARY, 0.8)
    ratio("non-streamed, 32 connections, every request traced: share of passthrough req/s", "json", FULLY_TRACED, 0.5)
    row = _find(rows, "json", 1, PRIMARY)
    added = row["added_p50_ms"] if row else None
    targets.append(
        {
            "target": "added median latency at 1 connection over the direct upstream (ms)",
            "measured": added,
            "bar": "<= 0.4 ms",
            "met": None if added is None else added <= 0.4,
        }
    )
    ratio("streamed, 32 connections: share of the streaming passthrough's req/s", "stream", PRIMARY, 0.8)
    worst = max(peak_rss.values()) if peak_rss else None
    targets.append(
        {
            "target": "peak RSS per tenantgate worker after the run (MB)",
            "measured": worst,
            "bar": f"<= {RSS_LIMIT_MB:.0f} MB",
            "met": None if worst is None else worst <= RSS_LIMIT_MB,
        }
    )
    status = usage.get("status")
    targets.append(
        {
            "target": "usage events lost or duplicated",
            "measured": None if status == "skipped" else status,
            "bar": "none",
            "met": None if status == "skipped" else status == "pass",
            "note": usage.get("reason", ""),
        }
    )
    return targets


def _cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'mode':<7}{'conns':>5}  {'contender':<24}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'+p50 ms':>9}{'vs pass':>9}{'errors':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        errors = r["non_2xx"] + r["socket_errors"]
        lines.append(
            f"{r['mode']:<7}{r['connections']:>5}  {LABELS.get(r['contender'], r['contender']):<24}"
            f"{r['rps']:>9.0f}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}"
            f"{_cell(r['added_p50_ms'], '{:+.3f}'):>9}{_cell(r['ratio_to_passthrough'], '{:.0%}'):>9}{errors:>8}"
        )
    return "\n".join(lines)


def targets_text(targets: list[dict[str, Any]]) -> str:
    lines = []
    for t in targets:
        mark = {True: "MET ", False: "MISS", None: "n/a "}[t["met"]]
        measured = t["measured"]
        if isinstance(measured, float) and "share" in t["target"]:
            measured = f"{measured:.0%}"
        note = f"  ({t['note']})" if t.get("note") else ""
        lines.append(f"  [{mark}] {t['target']}: {_cell(measured)} (bar {t['bar']}){note}")
    return "\n".join(lines)


def write(results: dict[str, Any], directory: Path, stamp: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"bench-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    (directory / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    return path


REQUIRED_KEYS = {
    "schema": str,
    "started_at": str,
    "command": str,
    "quick": bool,
    "machine": dict,
    "timing": dict,
    "cases": list,
    "summary": list,
    "peak_rss_mb": dict,
    "targets": list,
    "usage_check": dict,
    "telemetry_received": dict,
    "cpu": dict,
}
SUMMARY_KEYS = {
    "mode",
    "connections",
    "contender",
    "rps",
    "p50_ms",
    "p99_ms",
    "added_p50_ms",
    "ratio_to_passthrough",
    "non_2xx",
    "socket_errors",
}


def validate(results: dict[str, Any]) -> list[str]:
    """Problems with a results document (empty when it has the documented shape)."""
    problems = [
        f"missing or wrong type: {key}" for key, kind in REQUIRED_KEYS.items() if not isinstance(results.get(key), kind)
    ]
    if results.get("schema") != SCHEMA:
        problems.append(f"schema is {results.get('schema')!r}, expected {SCHEMA!r}")
    for row in results.get("summary", []):
        missing = SUMMARY_KEYS - row.keys()
        if missing:
            problems.append(f"summary row {row.get('contender')} lacks {sorted(missing)}")
    if results.get("usage_check", {}).get("status") not in ("pass", "fail", "skipped"):
        problems.append("usage_check.status must be pass, fail or skipped")
    return problems
