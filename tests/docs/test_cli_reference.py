"""docs/cli.md's synopsis names every command there is, with every option it takes, and no command there is not."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

from tenantgate.cli import app

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "cli.md").read_text()
_WORD = re.compile(r"[a-z][a-z0-9-]*(?:\|[a-z][a-z0-9-]*)*")


def _synopsis() -> list[str]:
    """The synopsis block's entries, continuation lines joined to the line that starts them."""
    block = PAGE.split("```text\n", 1)[1].split("```", 1)[0]
    entries: list[str] = []
    for line in block.splitlines():
        if line.startswith("tenantgate "):
            entries.append(line)
        elif line.startswith(" ") and entries:
            entries[-1] += " " + line.strip()
    return entries


def _commands(command: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every command by its path (typer's own click objects); a group whose own options do something (``usage``)
    counts as one too."""
    subcommands: dict[str, Any] = getattr(command, "commands", {})
    found: dict[tuple[str, ...], Any] = {}
    if not subcommands or _options(command):
        found[path] = command
    for name, sub in subcommands.items():
        found |= _commands(sub, (*path, name))
    return found


def _options(command: Any) -> set[str]:
    return {
        name
        for param in command.params
        if param.param_type_name == "option"
        for name in param.opts
        if name.startswith("--") and name != "--help"
    }


def _documented() -> dict[tuple[str, ...], list[str]]:
    """Command path -> the synopsis entries that show it (``keys get|revoke KEY_ID`` shows two)."""
    shown: dict[tuple[str, ...], list[str]] = {}
    for entry in _synopsis():
        words = entry.split()[1:]
        paths: list[tuple[str, ...]] = [()]
        for word in words:
            if not _WORD.fullmatch(word):
                break
            paths = [(*path, name) for path in paths for name in word.split("|")]
        for path in paths:
            shown.setdefault(path, []).append(entry)
    return shown


def test_every_command_is_in_the_synopsis_and_every_entry_is_a_command() -> None:
    commands = _commands(typer.main.get_command(app))
    documented = _documented()
    assert sorted(set(commands) - set(documented)) == [], "commands missing from docs/cli.md"
    assert sorted(set(documented) - set(commands)) == [], "docs/cli.md shows commands that do not exist"


def test_each_entry_shows_every_option_of_its_command() -> None:
    commands = _commands(typer.main.get_command(app))
    documented = _documented()
    # LIMITS and KEY LIMITS stand for the limit options the page lists under the block.
    limits = re.search(r"`LIMITS` are `([^`]*)`", PAGE)
    assert limits is not None
    missing = {
        " ".join(path): sorted(
            option
            for option in _options(command)
            if not any(option in entry.replace("LIMITS", limits.group(1)) for entry in documented.get(path, []))
        )
        for path, command in commands.items()
    }
    assert {path: options for path, options in missing.items() if options} == {}
