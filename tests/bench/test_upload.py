"""The upload benchmark's plumbing, run small: both methods go through the gateway whole, and the report's shape.

Not a measurement: 8 MiB in 4 MiB parts; whether memory stays flat is what ``python -m bench.upload`` (1 GiB) shows.
"""

from __future__ import annotations

import json

import pytest

from bench import upload

pytestmark = pytest.mark.slow  # starts processes: `-m 'not slow'` skips it for a quick loop

MIB = upload.MIB


def test_a_file_goes_through_whole_by_both_methods_with_the_workers_memory_read(
    postgres_server: str, redis_url: str
) -> None:
    results = upload.measure(8 * MIB, 4 * MIB, postgres_server=postgres_server, redis_url=redis_url)

    assert [r.method for r in results] == ["files", "uploads"]
    for result in results:
        assert result.bytes == result.file_bytes == 8 * MIB, result
        assert result.seconds > 0 and result.mb_per_s > 0
        assert 0 < result.rss_before_mb <= result.rss_peak_mb, result
        assert result.rss_after_mb > 0
    assert results[0].requests == 1
    assert results[1].requests == 4  # create, two parts, complete
    table = upload.render(results).splitlines()
    assert table[0].split()[:5] == ["method", "MiB", "requests", "seconds", "MB/s"]
    assert [line.split()[:2] for line in table[1:]] == [["files", "8"], ["uploads", "8"]]


def test_main_prints_json_and_refuses_parts_over_openais_limit(
    postgres_server: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        upload.main(["--part-mib", "65"])
    assert "--part-mib" in capsys.readouterr().err

    status = upload.main(
        ["--mib", "2", "--methods", "files", "--json", "--postgres-url", postgres_server, "--redis-url", redis_url]
    )
    assert status == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["method"] == "files" and result["file_bytes"] == 2 * MIB
    assert {"rss_before_mb", "rss_peak_mb", "rss_after_mb", "growth_mb", "mb_per_s"} <= result.keys()
