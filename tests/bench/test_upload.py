"""The upload benchmark's plumbing, run small: both methods go through the gateway whole, and the report's shape.

Not a measurement: 8 MiB in 4 MiB parts; whether memory stays flat is what ``python -m bench.upload`` (1 GiB) shows.
"""

from __future__ import annotations

import json

import pytest

from bench import upload

pytestmark = pytest.mark.slow  # starts processes: `-m 'not slow'` skips it for a quick loop

MIB = upload.MIB


def test_parts_over_openais_limit_are_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        upload.main(["--part-mib", "65"])
    assert "--part-mib" in capsys.readouterr().err


def test_a_file_goes_through_whole_by_both_methods_with_the_workers_memory_read(
    postgres_server: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One run (a stack costs more than the 8 MiB): its JSON, then the table rendered from the same results."""
    argv = ["--mib", "8", "--part-mib", "4", "--json", "--postgres-url", postgres_server, "--redis-url", redis_url]
    assert upload.main(argv) == 0
    reported = json.loads(capsys.readouterr().out)

    assert [r["method"] for r in reported] == ["files", "uploads"]
    for result in reported:
        assert result["bytes"] == result["file_bytes"] == 8 * MIB, result
        assert result["seconds"] > 0 and result["mb_per_s"] > 0
        assert 0 < result["rss_before_mb"] <= result["rss_peak_mb"], result
        assert result["rss_after_mb"] > 0
        assert result["growth_mb"] == pytest.approx(result["rss_peak_mb"] - result["rss_before_mb"], abs=0.11)
    assert [r["requests"] for r in reported] == [1, 4]  # one POST; create, two parts, complete
    results = [upload.Result(**{k: v for k, v in r.items() if k != "growth_mb"}) for r in reported]
    table = upload.render(results).splitlines()
    assert table[0].split()[:5] == ["method", "MiB", "requests", "seconds", "MB/s"]
    assert [line.split()[:2] for line in table[1:]] == [["files", "8"], ["uploads", "8"]]
