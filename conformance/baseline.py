"""The conformance baseline: the SDK's API tests expected to fail through the gateway, each under the reason why.

The file (``conformance/baseline.txt``) is lines of three kinds: ``#`` comments (the header says what it was
observed against), ``[reason]`` opening a group, and test ids (pytest node ids, relative to the SDK's sdist) in
the group above them. A run agrees with the baseline when the tests that failed are exactly the ones listed:
a failure not listed is a regression, and a listed test that passes makes the baseline untrue, so both fail
the job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

BASELINE = Path(__file__).with_name("baseline.txt")
_GROUP = re.compile(r"^\[(.*)\]$")
# Node ids the SDK's tests have: a path under tests/, then ::-separated names, an optional [parametrization].
_TEST_ID = re.compile(r"^tests/[\w/]+\.py(::\w+)+(\[[^\]\s]+\])?$")


class BaselineError(ValueError):
    """The baseline file is malformed (the message names the line)."""


@dataclass(frozen=True)
class Baseline:
    reasons: dict[str, str] = field(default_factory=dict)
    """Test id -> the reason it is expected to fail."""
    header: tuple[str, ...] = ()

    def groups(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for test_id, reason in self.reasons.items():
            grouped.setdefault(reason, []).append(test_id)
        return grouped


def parse(text: str) -> Baseline:
    reasons: dict[str, str] = {}
    header: list[str] = []
    reason: str | None = None
    counts: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if reason is None:
                header.append(line.removeprefix("#").strip())
            continue
        group = _GROUP.match(line)
        if group:
            if reason is not None and counts[reason] == 0:
                raise BaselineError(f"line {number}: the group [{reason}] above lists no test")
            reason = group.group(1).strip()
            if not reason:
                raise BaselineError(f"line {number}: a group needs a reason: [why these tests fail]")
            if reason in counts:
                raise BaselineError(f"line {number}: the group [{reason}] appears twice")
            counts[reason] = 0
            continue
        if reason is None:
            raise BaselineError(f"line {number}: {line!r} is not under a [reason]")
        if not _TEST_ID.match(line):
            raise BaselineError(f"line {number}: {line!r} is not a test id (tests/...py::Class::test[param])")
        if line in reasons:
            raise BaselineError(f"line {number}: {line} is listed twice")
        reasons[line] = reason
        counts[reason] += 1
    if reason is not None and counts[reason] == 0:
        raise BaselineError(f"the last group [{reason}] lists no test")
    return Baseline(reasons, tuple(header))


def load(path: Path = BASELINE) -> Baseline:
    return parse(path.read_text(encoding="utf-8"))


def render(groups: Mapping[str, Iterable[str]], header: Iterable[str]) -> str:
    lines = [f"# {line}" if line else "#" for line in header]
    for reason in sorted(groups):
        lines += ["", f"[{reason}]", *sorted(groups[reason])]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Comparison:
    unexpected_failures: list[str]
    """Failed, not in the baseline: a regression (or a new test the baseline has not seen)."""
    unexpected_passes: list[str]
    """In the baseline, passed: the baseline is no longer true."""
    missing: list[str]
    """In the baseline, not run at all (renamed or removed upstream, or a narrower selection)."""
    passed: int
    expected_failures: int
    total: int

    @property
    def agrees(self) -> bool:
        return not self.unexpected_failures and not self.unexpected_passes


def compare(outcomes: Mapping[str, bool], baseline: Baseline) -> Comparison:
    """``outcomes``: test id -> passed. Skipped tests are left out by the caller: they neither pass nor fail."""
    failed = {test_id for test_id, ok in outcomes.items() if not ok}
    expected = set(baseline.reasons)
    return Comparison(
        unexpected_failures=sorted(failed - expected),
        unexpected_passes=sorted(test_id for test_id in expected if outcomes.get(test_id) is True),
        missing=sorted(expected - set(outcomes)),
        passed=len(outcomes) - len(failed),
        expected_failures=len(failed & expected),
        total=len(outcomes),
    )
