"""scripts/test picks pytest's worker count as docs/getting-started.md says: 4 by default, another with -n; and
hands tests out with --dist loadgroup unless told another way (tests/support/scheduling.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, *args: str) -> list[str]:
    """Run a copy of scripts/test whose bootstrap does nothing and whose python prints the pytest arguments."""
    (tmp_path / "scripts").mkdir(exist_ok=True)
    shutil.copy(REPO / "scripts" / "test", tmp_path / "scripts" / "test")
    bootstrap = tmp_path / "scripts" / "bootstrap"
    bootstrap.write_text("#!/usr/bin/env bash\nexit 0\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    python = tmp_path / ".venv" / "bin" / "python"
    python.write_text('#!/usr/bin/env bash\necho "$@"\n')
    for path in (tmp_path / "scripts" / "test", bootstrap, python):
        path.chmod(0o755)
    result = subprocess.run(
        [str(tmp_path / "scripts" / "test"), *args], capture_output=True, text=True, env=dict(os.environ), check=True
    )
    return result.stdout.split()


def test_four_processes_by_default(tmp_path: Path) -> None:
    assert _run(tmp_path, "tests/wire") == ["-m", "pytest", "-n", "4", "--dist", "loadgroup", "tests/wire"]


@pytest.mark.parametrize(
    "args",
    [("-n", "0"), ("-n2",), ("--numprocesses=1",)],
)
def test_your_own_count_replaces_the_default(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert _run(tmp_path, "-q", *args) == ["-m", "pytest", "--dist", "loadgroup", "-q", *args]


def test_without_xdist_no_distribution_is_asked_for(tmp_path: Path) -> None:
    assert _run(tmp_path, "-q", "-p", "no:xdist") == ["-m", "pytest", "-q", "-p", "no:xdist"]


@pytest.mark.parametrize("args", [("--dist", "load"), ("--dist=worksteal",), ("-d",)])
def test_your_own_distribution_replaces_the_default(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert _run(tmp_path, *args) == ["-m", "pytest", "-n", "4", *args]


def test_the_suites_httpx_clients_share_one_default_tls_context_and_keep_their_own_verify() -> None:
    """tests/support/client_tls.py (installed by tests/conftest.py): what the suite saves, without changing what a
    client made with its own ``verify`` trusts."""
    import ssl

    import httpx
    import httpx2

    def context(client: httpx.Client | httpx2.Client) -> ssl.SSLContext:
        pool = client._transport._pool  # type: ignore[union-attr]
        return pool._ssl_context  # type: ignore[no-any-return]

    with httpx.Client() as a, httpx.Client() as b, httpx2.Client() as c, httpx2.Client() as d:
        assert context(a) is context(b) and context(c) is context(d)
        assert context(a).verify_mode == ssl.CERT_REQUIRED and context(a).get_ca_certs()  # a CA bundle, verified
    with httpx.Client() as shared, httpx.Client(verify=False) as unverified:
        assert context(unverified) is not context(shared) and context(unverified).verify_mode == ssl.CERT_NONE
