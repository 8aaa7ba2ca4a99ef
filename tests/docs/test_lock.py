"""The lock files (requirements/*.txt, written by scripts/lock) meet pyproject.toml and agree with each other.

scripts/bootstrap checks the environment it installed (`pip check`); these tests cover the lock files it did not
install (bench, docs, a machine's other extras) and catch a pyproject.toml edit that was not locked.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*;\s*(.+?))?\s*\\?$")


def _pins(name: str) -> dict[str, set[str]]:
    """Package -> the versions a lock file pins for it (several when markers split it, e.g. by Python version)."""
    pins: dict[str, set[str]] = {}
    lines = (REQUIREMENTS / f"{name}.txt").read_text().splitlines()
    for number, line in enumerate(lines):
        if not line or line[0] in "# ":
            continue
        match = PIN.match(line)
        assert match, f"{name}.txt line {number + 1} is not an exact pin: {line!r}"
        assert number + 1 < len(lines) and lines[number + 1].strip().startswith("--hash=sha256:"), line
        pins.setdefault(canonicalize_name(match.group(1)), set()).add(match.group(2))
    return pins


def _declared(extras: list[str]) -> list[Requirement]:
    """The requirements of the package with these extras, its own extras it names (tenantgate[docs]) included."""
    project = PYPROJECT["project"]
    wanted = [Requirement(text) for text in project["dependencies"]]
    seen: set[str] = set()
    pending = list(extras)
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
                pending.extend(requirement.extras)
            else:
                wanted.append(requirement)
    return wanted


LOCKS = {"base": [], "test": ["test"], "docs": ["docs"], "bench": ["bench"]}


def test_every_extra_has_a_lock_file():
    assert set(PYPROJECT["project"]["optional-dependencies"]) | {"base"} == set(LOCKS)


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_pins_every_declared_requirement_at_an_allowed_version(lock: str):
    pins = _pins(lock)
    for requirement in _declared(LOCKS[lock]):
        if requirement.marker is not None and not requirement.marker.evaluate({"sys_platform": "linux"}):
            continue
        versions = pins.get(canonicalize_name(requirement.name))
        assert versions, f"requirements/{lock}.txt does not pin {requirement.name}: run scripts/lock"
        refused = [v for v in versions if not requirement.specifier.contains(v, prereleases=True)]
        assert not refused, f"requirements/{lock}.txt pins {requirement.name}=={refused}, pyproject says {requirement}"


def test_the_build_backend_is_locked_at_what_pyproject_requires():
    pins = _pins("build")
    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        versions = pins.get(canonicalize_name(requirement.name))
        assert versions and all(requirement.specifier.contains(v) for v in versions), (text, versions)


def test_a_package_has_the_same_version_in_every_lock_file():
    by_package: dict[str, dict[str, set[str]]] = {}
    for lock in [*LOCKS, "build"]:
        for package, versions in _pins(lock).items():
            by_package.setdefault(package, {})[lock] = versions
    differing = {
        package: locks for package, locks in by_package.items() if len(set(map(frozenset, locks.values()))) > 1
    }
    assert not differing, differing
