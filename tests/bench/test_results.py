"""The benchmark's results: ratios and added latency, the issue's targets, the JSON shape, the usage check."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from bench import report
from bench.config import DIRECT, FULLY_TRACED, PASSTHROUGH, PRIMARY
from bench.usage_check import check_usage


def _case(mode: str, connections: int, contender: str, rps: float, p50: float, round_no: int = 1) -> dict[str, Any]:
    latency = {"min": p50 / 2, "mean": p50, "stdev": 0.1, "max": p50 * 10, "p50": p50, "p75": p50, "p90": p50,
               "p99": p50 * 3, "p999": p50 * 5}  # fmt: skip
    wrk = {"requests": int(rps * 5), "duration_s": 5.0, "rps": rps, "non_2xx": 0, "socket_errors": 0,
           "latency_ms": latency}  # fmt: skip
    return {"mode": mode, "connections": connections, "round": round_no, "contender": contender, "wrk": wrk}


CASES = [
    _case("json", 1, DIRECT, 20000, 0.03),
    _case("json", 1, PASSTHROUGH, 3000, 0.29),
    _case("json", 1, PRIMARY, 2500, 0.50),
    _case("json", 1, FULLY_TRACED, 2000, 0.60),
    _case("json", 32, DIRECT, 30000, 1.0),
    _case("json", 32, PASSTHROUGH, 3000, 10.0, round_no=1),
    _case("json", 32, PASSTHROUGH, 2000, 12.0, round_no=2),
    _case("json", 32, PRIMARY, 2400, 12.0),
    _case("json", 32, FULLY_TRACED, 1000, 30.0),
    _case("stream", 32, PASSTHROUGH, 1000, 30.0),
    _case("stream", 32, PRIMARY, 900, 33.0),
]


def _row(rows: list[dict[str, Any]], mode: str, conns: int, contender: str) -> dict[str, Any]:
    return next(r for r in rows if (r["mode"], r["connections"], r["contender"]) == (mode, conns, contender))


def test_summary_compares_with_direct_upstream_and_passthrough() -> None:
    rows = report.summarise(CASES)
    passthrough = _row(rows, "json", 32, PASSTHROUGH)
    assert passthrough["rps"] == 2500  # median of the two rounds
    assert passthrough["rps_rounds"] == [3000, 2000]
    assert _row(rows, "json", 32, PRIMARY)["ratio_to_passthrough"] == pytest.approx(2400 / 2500, abs=0.001)
    assert _row(rows, "json", 1, PRIMARY)["added_p50_ms"] == pytest.approx(0.47)
    assert passthrough["ratio_to_passthrough"] is None  # only tenantgate is judged against the passthrough
    assert _row(rows, "stream", 32, PRIMARY)["added_p50_ms"] is None  # no direct run of that case


def test_targets_are_judged_and_unmeasured_ones_say_so() -> None:
    rows = report.summarise(CASES)
    usage = {"status": "skipped", "reason": "no usage table"}
    targets = {t["target"]: t for t in report.judge(rows, {PRIMARY: 98.0, FULLY_TRACED: 130.0}, usage)}
    by_start = {name.split(":")[0].split(" (")[0]: t for name, t in targets.items()}
    assert by_start["non-streamed, 32 connections, 10% traced"]["met"] is True  # 96%
    assert by_start["non-streamed, 32 connections, every request traced"]["met"] is False  # 40% < 50%
    assert by_start["added median latency at 1 connection over the direct upstream"]["met"] is False  # 0.47 ms
    assert by_start["streamed, 32 connections"]["met"] is True  # 90%
    assert by_start["peak RSS per tenantgate worker after the run"]["measured"] == 130.0
    assert by_start["peak RSS per tenantgate worker after the run"]["met"] is False
    usage_target = by_start["usage events lost or duplicated"]
    assert usage_target["met"] is None and usage_target["note"] == "no usage table"
    text = report.targets_text(list(targets.values()))
    assert "[MISS] non-streamed, 32 connections, every request traced" in text
    assert "[n/a ] usage events lost or duplicated" in text


def _results() -> dict[str, Any]:
    rows = report.summarise(CASES)
    usage = {"status": "skipped", "reason": "no usage table"}
    return {
        "schema": report.SCHEMA,
        "started_at": "2026-01-01T00:00:00+0000",
        "command": "python -m bench.run",
        "quick": False,
        "machine": {"cpus": 2},
        "timing": {"seconds": 5, "warmup_seconds": 1, "rounds": 2},
        "cases": CASES,
        "summary": rows,
        "peak_rss_mb": {PRIMARY: {"1": 98.0}},
        "targets": report.judge(rows, {PRIMARY: 98.0}, usage),
        "usage_check": usage,
        "telemetry_received": {},
        "cpu": {"machine_busy_cores": 1.9},
    }


def test_results_document_has_the_documented_shape(tmp_path) -> None:
    results = _results()
    assert report.validate(results) == []
    path = report.write(results, tmp_path, "20260101-000000")
    assert path.name == "bench-20260101-000000.json" and (tmp_path / "latest.json").read_text() == path.read_text()
    del results["usage_check"]
    results["summary"][0].pop("rps")
    problems = report.validate(results)
    assert "missing or wrong type: usage_check" in problems
    assert any("lacks ['rps']" in p for p in problems)


def test_summary_table_lists_every_contender_of_every_case() -> None:
    text = report.table(report.summarise(CASES))
    assert text.count("\n") == 1 + len({(c["mode"], c["connections"], c["contender"]) for c in CASES})
    assert "naive passthrough" in text and "tenantgate, 100% traced" in text


def _dsn(postgres_url: str) -> str:
    return postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)


def test_usage_check_finds_the_metering_event_table(postgres_url: str) -> None:
    # A database migrated to this build's head: metering's usage_events (not its rollups) is the table checked.
    result = check_usage(
        _dsn(postgres_url), {"tenantgate": {"tenant_id": "ten_x", "upstream_200": 5}}, settle_seconds=0
    )
    assert (result["status"], result["table"], result["how_found"]) == ("fail", "usage_events", "detected")
    assert result["variants"]["tenantgate"]["lost"] == 5


def test_usage_check_counts_events_per_tenant_and_finds_lost_and_duplicated(postgres_url: str) -> None:
    # A stand-in table with only the columns the check relies on, to exercise the counting, not a schema.
    async def setup() -> None:
        conn = await asyncpg.connect(_dsn(postgres_url))
        try:
            await conn.execute("DROP TABLE usage_events")  # metering's own, replaced by the stand-in
            await conn.execute("CREATE TABLE usage_events (tenant_id text, request_id text)")
            rows = [("ten_a", "r1"), ("ten_a", "r2"), ("ten_a", "r2"), ("ten_b", "r3"), ("ten_b", "r4")]
            await conn.executemany("INSERT INTO usage_events VALUES ($1, $2)", rows)
        finally:
            await conn.close()

    asyncio.run(setup())
    expected = {
        "a": {"tenant_id": "ten_a", "upstream_200": 3, "client_2xx": 3},
        "b": {"tenant_id": "ten_b", "upstream_200": 3, "client_2xx": 3},
    }
    result = check_usage(_dsn(postgres_url), expected, settle_seconds=0)
    assert result["status"] == "fail" and result["table"] == "usage_events"
    assert result["variants"]["a"]["events"] == 3 and result["variants"]["a"]["duplicate_request_ids"] == 1
    assert result["variants"]["b"]["lost"] == 1
    expected["b"]["upstream_200"] = 2
    assert check_usage(_dsn(postgres_url), {"b": expected["b"]}, settle_seconds=0)["status"] == "pass"
