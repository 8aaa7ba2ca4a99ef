"""The README's Python examples run as written against a gateway (only the address differs)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.support.gateway import Gateway
from tests.support.metering import flush

README = (Path(__file__).parent.parent / "README.md").read_text()
EXAMPLES = re.findall(r"```python\n(.*?)```", README, re.S)


def _example(marker: str) -> str:
    (found,) = [e for e in EXAMPLES if marker in e]
    return found


def _run(example: str, gateway: Gateway) -> str:
    assert "http://127.0.0.1:8080" in example
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example.replace("http://127.0.0.1:8080", gateway.url), "README.md", "exec"), {})
    return printed.getvalue()


def test_calling_it_and_reading_the_usage_back(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    created = gateway.new_key()
    monkeypatch.setenv("TENANTGATE_KEY", created["key"])
    monkeypatch.setenv("TENANTGATE_ADMIN_TOKEN", gateway.admin_token)

    answered = _run(_example('api_key=os.environ["TENANTGATE_KEY"]'), gateway).splitlines()
    assert len(answered) == 2 and answered[0] == answered[1] and "Hello" in answered[0]  # plain, then streamed

    flush(gateway)
    printed = _run(_example("admin_api_key="), gateway).splitlines()
    mine = [line.split() for line in printed if created["tenant_id"] in line]
    assert len(mine) == 1 and mine[0][2] == "gpt-4o-mini" and int(mine[0][3]) > 0 and int(mine[0][4]) > 0
    assert printed[-1].endswith(" USD") and float(printed[-1].split()[0]) > 0
