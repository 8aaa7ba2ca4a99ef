"""Every Python and shell example in README.md and docs/ runs as written against a gateway (only the address
differs), unless the line before its fence says why not: ``<!-- not run: reason -->``.

The examples read the caller's key from ``TENANTGATE_KEY`` and the admin token from ``TENANTGATE_ADMIN_TOKEN``, as
the pages tell the reader to set them. Shell examples run under ``bash -euo pipefail`` with curl and jq.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tenantgate import database
from tenantgate.platform.app import create_app
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.support.gateway import Gateway
from tests.support.metering import flush
from tests.support.server import ServedApp

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
ADDRESS = "http://127.0.0.1:8080"
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```$", re.M | re.S)
NOT_RUN = re.compile(r"<!-- not run: (\S[^>]*?) -->\n\Z")


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    language: str
    code: str
    not_run: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _examples() -> list[Example]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for fence in FENCE.finditer(text):
            marker = NOT_RUN.search(text, 0, fence.start())
            found.append(
                Example(
                    page=str(page.relative_to(ROOT)),
                    line=text.count("\n", 0, fence.start()) + 1,
                    language=fence.group(1),
                    code=fence.group(2),
                    not_run=marker.group(1) if marker else None,
                )
            )
    return found


EXAMPLES = _examples()
RUNNABLE = [e for e in EXAMPLES if e.language in ("python", "bash") and e.not_run is None]


def test_every_code_block_says_what_it_is():
    """A fence names its language (``text`` for listings), so a runnable example cannot hide as a plain block, and
    the not-run marker stands only before examples that could otherwise run."""
    assert all(e.language for e in EXAMPLES), [e.id for e in EXAMPLES if not e.language]
    misplaced = [e.id for e in EXAMPLES if e.not_run is not None and e.language not in ("python", "bash")]
    assert not misplaced
    assert len(RUNNABLE) >= 10, [e.id for e in RUNNABLE]


def test_yaml_examples_parse():
    for example in EXAMPLES:
        if example.language == "yaml":
            assert isinstance(yaml.safe_load(example.code), dict), example.id


@pytest.fixture(scope="module")
def docs_gateway(tmp_path_factory: pytest.TempPathFactory, dev_upstream: str) -> Iterator[Gateway]:
    """One gateway for all examples (they use distinct names): SQLite, the dev upstream, the tests' admin token."""
    directory = tmp_path_factory.mktemp("docs-examples")
    url = f"sqlite+aiosqlite:///{directory / 'tenantgate.db'}"
    database.upgrade(url)
    settings = make_settings(database_url=url, upstream_base_url=dev_upstream, spool_dir=directory / "spool")
    app = create_app(settings)
    with ServedApp(app) as served:
        yield Gateway(url=served.url, admin_token=ADMIN_TOKEN, settings=settings, runtime=app.runtime)


@pytest.fixture(scope="module")
def reader_key(docs_gateway: Gateway) -> dict[str, str]:
    """The key a reader exports as TENANTGATE_KEY."""
    return docs_gateway.new_key("docs-reader")


def _run_python(code: str, gateway: Gateway) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code.replace(ADDRESS, gateway.url), "example", "exec"), {})
    return printed.getvalue()


def _run_bash(code: str, gateway: Gateway, env: dict[str, str], cwd: Path) -> str:
    assert shutil.which("curl") and shutil.which("jq"), "the shell examples need curl and jq (.ci/run installs jq)"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code.replace(ADDRESS, gateway.url)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _chatted_and_flushed(gateway: Gateway, key: dict[str, str]) -> None:
    gateway.client(key["key"]).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    flush(gateway)


def _streamed_twice(output: str, _: dict[str, str]) -> None:
    answered = output.splitlines()
    assert len(answered) == 2 and answered[0] == answered[1] and "Hello" in answered[0]  # plain, then streamed


def _answered_once(output: str, _: dict[str, str]) -> None:
    assert len(output.splitlines()) == 1 and "Hello" in output


def _usage_of_the_readers_tenant(output: str, key: dict[str, str]) -> None:
    printed = output.splitlines()
    # Other pages' examples use other models with the same key.
    mine = [line.split() for line in printed if key["tenant_id"] in line and line.split()[2] == "gpt-4o-mini"]
    assert len(mine) == 1 and int(mine[0][3]) > 0 and int(mine[0][4]) > 0
    assert printed[-1].endswith(" USD") and float(printed[-1].split()[0]) > 0


def _billed_though_hung_up(output: str, _: dict[str, str]) -> None:
    chat, responses = (line.split() for line in output.splitlines())
    assert chat[:2] == ["chat", "estimated"] and 0 < int(chat[3]) < int(chat[2])  # reasoning, then visible text
    assert responses[:2] == ["responses", "upstream"] and int(responses[3]) == 64 < int(responses[2])


def _chatted_unpriced_and_flushed(gateway: Gateway, _: dict[str, str]) -> None:
    client = gateway.client(gateway.new_key("docs-pricing")["key"])  # not the reader's: other examples count theirs
    for model in ("gpt-4o-mini", "acme-llm"):  # the second has no price
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    flush(gateway)


def _priced_and_unpriced_line_items(output: str, _: dict[str, str]) -> None:
    lines = output.splitlines()
    assert any(line.startswith("acme-llm, unpriced ") and line.endswith(" requests without a price") for line in lines)
    assert any(line.startswith("gpt-4o-mini, input ") and line.endswith(" USD") for line in lines)


def _batch_answered(output: str, _: dict[str, str]) -> None:
    status, *answers = output.splitlines()
    assert status.startswith("completed ") and "completed=3" in status
    assert [line.split()[0] for line in answers] == ["q0", "q1", "q2"]
    assert all(int(line.split()[1]) > 0 for line in answers)


def _created_a_key(output: str, _: dict[str, str]) -> None:
    assert '"key":"tg-' in output.replace(" ", "")


# What a reader would see, for the examples whose output says whether they worked: code marker -> (setup, check);
# the first marker an example contains decides.
Check = Callable[[str, dict[str, str]], None]
CHECKS: dict[str, tuple[Callable[[Gateway, dict[str, str]], None] | None, Check]] = {
    "hung_up": (None, _billed_though_hung_up),
    "stream=True": (None, _streamed_twice),
    "print(reply.choices[0].message.content)": (None, _answered_once),
    "unpriced_requests": (_chatted_unpriced_and_flushed, _priced_and_unpriced_line_items),
    "admin_api_key=": (_chatted_and_flushed, _usage_of_the_readers_tenant),
    '{"name": "backend"}': (None, _created_a_key),
    "client.batches.create(": (None, _batch_answered),
}


def _check_for(example: Example) -> tuple[Callable[[Gateway, dict[str, str]], None] | None, Check | None]:
    matched = [value for marker, value in CHECKS.items() if marker in example.code]
    return matched[0] if matched else (None, None)


def test_every_check_applies_to_an_example():
    for marker in CHECKS:
        assert any(marker in e.code for e in RUNNABLE), marker


@pytest.mark.parametrize("example", RUNNABLE, ids=lambda e: e.id)
def test_example_runs(
    example: Example,
    docs_gateway: Gateway,
    reader_key: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
):
    assert ADDRESS in example.code, f"{example.id}: examples talk to {ADDRESS}, the address ./scripts/serve uses"
    setup, check = _check_for(example)
    if setup is not None:
        setup(docs_gateway, reader_key)
    monkeypatch.setenv("TENANTGATE_KEY", reader_key["key"])
    monkeypatch.setenv("TENANTGATE_ADMIN_TOKEN", ADMIN_TOKEN)
    if example.language == "python":
        output = _run_python(example.code, docs_gateway)
    else:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        output = _run_bash(example.code, docs_gateway, env, tmp_path)
        assert '"error"' not in output, output
    if check is not None:
        check(output, reader_key)
    assert httpx.get(docs_gateway.url + "/healthz").status_code == 200
