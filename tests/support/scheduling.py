"""How pytest-xdist hands out the suite (``--dist loadgroup``, scripts/test): see tests/conftest.py.

A module's tests that share a module-scoped fixture (two gateway processes, a browser, a populated world) are one
unit of work, so one process sets the fixture up once; every other test is a unit of its own, handed to whichever
process is free. pytest-xdist's own ``xdist_group`` mark cannot say this under pytest 9 (it renames the test by
assigning ``item._nodeid``, which pytest 9 no longer reads), so the worker processes write the grouping to a file
the controller's scheduler reads once they have all collected.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

ENV = "TENANTGATE_TEST_GROUPS_FILE"


def module_groups(items: list[pytest.Item]) -> dict[str, str]:
    """Each test that uses a module- (or class-, package-) scoped fixture, with its module's path."""
    groups: dict[str, str] = {}
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if any(defs and defs[-1].scope in ("module", "class", "package") for defs in info.name2fixturedefs.values()):
            groups[item.nodeid] = item.nodeid.split("::", 1)[0]
    return groups


def start(config: pytest.Config) -> None:
    """In the controller, before the workers start: where they will write the grouping."""
    if hasattr(config, "workerinput") or config.getoption("dist", "no") != "loadgroup":
        return
    fd, path = tempfile.mkstemp(prefix="tg-test-groups-", suffix=".json")
    os.close(fd)
    os.environ[ENV] = path


def finish() -> None:
    path = os.environ.pop(ENV, None)
    if path:
        Path(path).unlink(missing_ok=True)


def write(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker, once collected (every worker collects the same tests, so any of them may write)."""
    path = os.environ.get(ENV)
    if not path or not hasattr(config, "workerinput"):
        return
    partial = f"{path}.{config.workerinput['workerid']}"
    Path(partial).write_text(json.dumps(module_groups(items)))
    os.replace(partial, path)


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The controller's scheduler for ``--dist loadgroup``: pytest-xdist's, with the modules' groups added."""
    path = os.environ.get(ENV)
    if config.getoption("dist", "no") != "loadgroup" or not path:
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleFixtureScheduling(LoadGroupScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # first called once every worker has collected (and written the file)
                try:
                    self.groups = dict(json.loads(Path(path).read_text() or "{}"))
                except (OSError, ValueError):
                    self.groups = {}
            group = self.groups.get(nodeid)
            return group if group is not None else str(super()._split_scope(nodeid))

    return ModuleFixtureScheduling(config, log)
