"""Running management commands in-process against a fresh database."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from tenantgate.cli import app
from tests.conftest import SECRET_KEY

Invoke = Callable[..., Any]


@pytest.fixture
def cli_env(database_url: str) -> dict[str, str]:
    return {
        "TENANTGATE_DATABASE_URL": database_url,
        "TENANTGATE_SECRET_KEY": SECRET_KEY,
        "TENANTGATE_ENV": "production",
        "TENANTGATE_REDIS_URL": "",
    }


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Invoke:
    """``cli("tenants", "list")`` -> stdout; with ``--json`` the parsed object. Fails on a non-zero exit."""

    def invoke(*args: str, expect: int = 0) -> Any:
        result = CliRunner().invoke(app, list(args), env=cli_env)
        assert result.exit_code == expect, f"{args}: {result.output}"
        if expect != 0:
            return result
        return json.loads(result.stdout) if "--json" in args else result.stdout

    return invoke
