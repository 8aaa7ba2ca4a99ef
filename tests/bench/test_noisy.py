"""The noisy-neighbour scenario's plumbing, run tiny: both setups, every case, the report's shape.

Not a measurement: one second per case, a flood of four connections beside the quiet tenant's second (no lead, no
warm-up).
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest

from bench import noisy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"),
]


def test_one_run_reports_the_quiet_tenant_beside_each_flood_on_both_setups(
    postgres_server: str, redis_url: str, tmp_path: Path
) -> None:
    results = noisy.run(
        seconds=1,
        rounds=1,
        flood_connections=4,
        flood_rpm=1,
        postgres_server=postgres_server,
        redis_url=redis_url,
        workdir=tmp_path,
        lead=0,
        warmup=0,
    )
    noisy.validate(results)
    assert list(results["setups"]) == ["postgres", "embedded"]
    for name, setup in results["setups"].items():
        cases = setup["cases"]
        assert list(cases) == list(noisy.CASES)
        # The quiet tenant is answered in every case, flood or not.
        assert all(case["quiet"]["errors"] == 0 and case["quiet"]["requests"] > 0 for case in cases.values()), name
        # The limited flood (1 request a minute) is refused almost entirely; the unlimited one never. (How many of
        # its requests were admitted is the limiter's exactness, tested in tests/tenants, not the harness's.)
        limited, unlimited = cases["over-limit flood"]["flood"], cases["unlimited flood"]["flood"]
        assert limited["refused"] >= 0.9 * limited["requests"] > 0, (name, limited)
        assert unlimited["refused"] == 0 and unlimited["requests"] > 0, (name, unlimited)
    table = noisy.render(results)
    assert "SQLite/Postgres alone c=1" in table and "SQLite/Postgres alone c=32" in table
    assert table.count("over-limit flood") == 2


def test_validate_refuses_a_report_missing_a_case_or_a_measurement() -> None:
    quiet = {"rps": 100.0, "p50_ms": 1.0, "p99_ms": 2.0, "requests": 100, "errors": 0}
    flood = {"rps": 900.0, "requests": 900, "refused": 0, "errors": 0}
    cases = {
        case: {"quiet": quiet, "flood": None if case in noisy.ALONE else flood, "load": 1.0} for case in noisy.CASES
    }
    good = {"setups": {"embedded": {"label": "embedded", "cases": cases}}}
    noisy.validate(good)
    missing = copy.deepcopy(good)
    del missing["setups"]["embedded"]["cases"]["unlimited flood"]
    zero = copy.deepcopy(good)
    zero["setups"]["embedded"]["cases"]["alone c=1"]["quiet"]["rps"] = 0.0
    silent = copy.deepcopy(good)
    silent["setups"]["embedded"]["cases"]["unlimited flood"]["flood"]["requests"] = 0
    for bad in (missing, zero, silent, {"setups": {}}):
        with pytest.raises(ValueError):
            noisy.validate(bad)
