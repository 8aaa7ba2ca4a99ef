"""The conformance job's judge (conformance/): the committed baseline is well formed and true to its docs page, and
a run is held to it both ways. The job itself (scripts/conformance) needs npm and the network, so CI leaves it out."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import baseline
from conformance.classify import classify
from conformance.run import _node_id, locked_requirement

ROOT = Path(__file__).resolve().parents[2]


def test_the_job_downloads_the_sdk_version_the_test_suite_runs() -> None:
    pin = locked_requirement(ROOT / "requirements" / "test.txt", "openai")
    assert pin.startswith(f"openai=={version('openai')} --hash=sha256:")
    assert pin.count("--hash=sha256:") >= 2  # the wheel's and the sdist's: the job downloads the sdist


_ID = "tests/api_resources/test_models.py::TestModels::test_method_list[loose]"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (f"{_ID}\n", "line 1: .* is not under a \\[reason\\]"),
        (f"[]\n{_ID}\n", "line 1: a group needs a reason"),
        (f"[a]\n{_ID}\n[b]\n{_ID}\n", "line 4: .* is listed twice"),
        (f"[a]\n{_ID}\n[a]\n", "line 3: the group \\[a\\] appears twice"),
        (f"[a]\n[b]\n{_ID}\n", "line 2: the group \\[a\\] above lists no test"),
        (f"[a]\n{_ID}\n[b]\n", "the last group \\[b\\] lists no test"),
        ("[a]\ntests/x.py::test y\n", "line 2: .* is not a test id"),
    ],
)
def test_a_malformed_baseline_is_refused_naming_the_line(text: str, complaint: str) -> None:
    with pytest.raises(baseline.BaselineError, match=complaint):
        baseline.parse(text)


def test_a_run_agrees_only_when_exactly_the_baselined_tests_fail() -> None:
    expected = baseline.parse("# header\n[route not served]\ntests/a.py::T::test_x[loose]\ntests/a.py::T::test_y\n")
    agreeing = baseline.compare(
        {"tests/a.py::T::test_x[loose]": False, "tests/a.py::T::test_y": False, "tests/a.py::T::test_z": True},
        expected,
    )
    assert agreeing.agrees and (agreeing.passed, agreeing.expected_failures, agreeing.total) == (1, 2, 3)

    regressed = baseline.compare(
        {"tests/a.py::T::test_x[loose]": False, "tests/a.py::T::test_y": False, "tests/a.py::T::test_z": False},
        expected,
    )
    assert not regressed.agrees and regressed.unexpected_failures == ["tests/a.py::T::test_z"]

    fixed = baseline.compare({"tests/a.py::T::test_x[loose]": True, "tests/a.py::T::test_y": False}, expected)
    assert not fixed.agrees and fixed.unexpected_passes == ["tests/a.py::T::test_x[loose]"]

    stale = baseline.compare({"tests/a.py::T::test_x[loose]": False}, expected)
    assert stale.missing == ["tests/a.py::T::test_y"]


_test_ids = st.builds(
    lambda path, names, param: f"tests/{path}.py::{'::'.join(names)}" + (f"[{param}]" if param else ""),
    st.from_regex(r"[a-z_]{1,8}(/[a-z_]{1,8}){0,2}", fullmatch=True),
    st.lists(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True), min_size=1, max_size=3),
    st.one_of(st.none(), st.from_regex(r"[a-z0-9_-]{1,8}", fullmatch=True)),
)
_reasons = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40).map(str.strip)


@given(st.dictionaries(_test_ids, _reasons.filter(bool), max_size=20))
def test_a_rendered_baseline_parses_back_to_the_same_reasons(reasons: dict[str, str]) -> None:
    groups: dict[str, list[str]] = {}
    for test_id, reason in reasons.items():
        groups.setdefault(reason, []).append(test_id)
    parsed = baseline.parse(baseline.render(groups, ["observed somewhere", ""]))
    assert parsed.reasons == reasons
    assert parsed.header[0] == "observed somewhere"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("openai.NotFoundError: Error code: 404 - Invalid URL (GET /v1/containers/c/files)", "route not served"),
        ("openai.NotFoundError: Error code: 404 - No such File object: file_id", "ownership"),
        ("openai.BadRequestError: Error code: 400 - Invalid 'limit': 0. It must be", "own index"),
        ("Error code: 404 - {'type': 'https://stoplight.io/prism/errors#NO_PATH_MATCHED_ERROR'}", "no such route"),
    ],
)
def test_failures_are_grouped_by_who_answered_and_why(message: str, reason: str) -> None:
    assert reason in classify(message)


def test_a_failure_no_rule_knows_is_left_for_a_person_to_explain() -> None:
    assert classify("AssertionError: [x] != y\nmore") == "unexplained: AssertionError: x != y"


def test_junit_names_become_the_node_ids_pytest_prints(tmp_path: Path) -> None:
    (tmp_path / "tests" / "api_resources" / "chat").mkdir(parents=True)
    (tmp_path / "tests" / "api_resources" / "chat" / "test_completions.py").touch()
    node = _node_id("tests.api_resources.chat.test_completions.TestCompletions", "test_method_create[loose]", tmp_path)
    assert node == "tests/api_resources/chat/test_completions.py::TestCompletions::test_method_create[loose]"
