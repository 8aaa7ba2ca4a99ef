"""The committed conformance baseline (conformance/baseline.txt) is true to itself and to docs/conformance.md: every
group has a reason a person wrote, and its counts are the page's."""

from __future__ import annotations

import re
from pathlib import Path

from conformance import baseline

ROOT = Path(__file__).resolve().parents[2]
_COUNTS = re.compile(r"(\d+) passed, (\d+) expected failures, (\d+) total")


def test_the_committed_baseline_gives_every_expected_failure_a_reason_a_person_wrote() -> None:
    committed = baseline.load()
    assert committed.reasons, "the baseline lists no test"
    for reason in committed.groups():
        assert not reason.startswith("unexplained"), f"name the reason of the group [{reason}]"
    header = " ".join(committed.header)
    assert re.search(r"on tenantgate [0-9a-f]{7,}", header), "the header names the commit it was observed on"
    counts = _COUNTS.search(header)
    assert counts is not None, "the header gives the counts"
    passed, failures, total = map(int, counts.groups())
    assert failures == len(committed.reasons)
    assert passed + failures == total


def test_the_docs_page_gives_the_baselines_counts() -> None:
    header_counts = _COUNTS.search(" ".join(baseline.load().header))
    page_counts = _COUNTS.search((ROOT / "docs" / "conformance.md").read_text(encoding="utf-8"))
    assert header_counts is not None and page_counts is not None
    assert page_counts.groups() == header_counts.groups()
