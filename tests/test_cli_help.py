"""``--help`` of every command answers from typer alone: nothing of the gateway is imported until a command runs.

What is imported is asserted, not how long it takes (timings belong in bench/): SQLAlchemy, FastAPI and the
settings are what made ``tenantgate --help`` take seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_EVERY_HELP = """
import contextlib, io, json, sys
import typer.main
from tenantgate.cli import app

def paths(command, prefix):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from paths(sub, [*prefix, name])

helps = {}
for path in paths(typer.main.get_command(app), []):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        app([*path, "--help"], prog_name="tenantgate")
    helps[" ".join(path)] = out.getvalue()
print(json.dumps({"helps": helps, "modules": sorted(sys.modules)}))
"""

# What a command loads when it runs; --help must not.
_NOT_FOR_HELP = (
    "sqlalchemy",
    "fastapi",
    "starlette",
    "uvicorn",
    "alembic",
    "pydantic_settings",
    "asyncio",
    "yaml",
    "orjson",
    "httpx",
    "aiosqlite",
    "asyncpg",
    "tiktoken",
    "opentelemetry",
    "limits",
    "cryptography",
)
_TENANTGATE_FOR_HELP = {"tenantgate", "tenantgate.cli", "tenantgate.commands", "tenantgate.tenants"}


@pytest.fixture(scope="module")
def every_help() -> dict[str, object]:
    result = subprocess.run([sys.executable, "-c", _EVERY_HELP], capture_output=True, text=True, check=True)
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


def test_every_help_loads_nothing_of_the_gateway(every_help: dict[str, object]) -> None:
    helps = every_help["helps"]
    assert isinstance(helps, dict)
    assert {"", "serve", "keys revoke", "tenants list", "usage replay-rejected", "db upgrade"} <= set(helps)
    modules = every_help["modules"]
    assert isinstance(modules, list)
    heavy = [m for m in modules if m.split(".")[0] in _NOT_FOR_HELP]
    assert heavy == []
    ours = {
        m
        for m in modules
        if m.startswith("tenantgate")
        and m not in _TENANTGATE_FOR_HELP
        and not m.startswith("tenantgate.commands.")
        and m != "tenantgate.tenants.enums"
    }
    assert ours == set()


def test_flags_are_shown_without_a_value(every_help: dict[str, object]) -> None:
    helps = every_help["helps"]
    assert isinstance(helps, dict)
    assert not [path for path, text in helps.items() if "<bool>" in text]
    # the flag, then its help: no value between them
    assert any(line.split()[:2] == ["--json", "Print"] for line in helps["keys revoke"].splitlines())
    assert "Usage: tenantgate keys revoke [OPTIONS] {key_id}" in helps["keys revoke"]
