"""docs/configuration.md documents every setting there is, and none that is not."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from tenantgate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = (ROOT / "docs" / "configuration.md").read_text()
VARIABLE = re.compile(r"\b(?:TENANTGATE|OTEL)_[A-Z0-9_]*[A-Z0-9]")


def _variable(name: str) -> str:
    """The environment variable a Settings field is read from (its first alias, else the prefixed name)."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"TENANTGATE_{name.upper()}"


def _table(heading: str) -> dict[str, str]:
    """First-column variables of the table under ``## heading`` -> their row."""
    section = REFERENCE.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name: row for row in rows for name in VARIABLE.findall(row.split("|")[1])}


SETTINGS = {_variable(name): name for name in Settings.model_fields}


def test_every_setting_has_a_row_and_every_row_is_a_setting():
    documented = _table("Settings")
    assert sorted(set(SETTINGS) - set(documented)) == [], "settings missing from docs/configuration.md"
    assert sorted(set(documented) - set(SETTINGS)) == [], "rows of docs/configuration.md that Settings lacks"


def test_each_rows_default_is_the_settings_default():
    """The default column shows the field's default, for the fields whose default is a plain value."""
    documented = _table("Settings")
    for variable, name in SETTINGS.items():
        default = Settings.model_fields[name].default
        if isinstance(default, bool):
            shown = str(default).lower()
        elif isinstance(default, int | float | str) and default not in ("",):
            shown = f"{default:g}" if isinstance(default, float) else str(default)
        else:
            continue
        column = documented[variable].split("|")[2]
        assert f"`{shown}`" in column, f"{variable}: default {shown!r}, docs say {column.strip()!r}"


def test_variables_read_elsewhere_are_not_settings_and_are_read_by_the_code():
    source = "\n".join(path.read_text() for path in (ROOT / "tenantgate").rglob("*.py"))
    otlp = (ROOT / "tenantgate" / "wire" / "otlphttp.py").read_text()
    elsewhere = _table("Read elsewhere")
    assert elsewhere
    for variable in elsewhere:
        assert variable not in SETTINGS, variable
        if variable.startswith("OTEL_EXPORTER_OTLP_"):
            # Read as OTEL_EXPORTER_OTLP_[<SIGNAL>_]<NAME>, so the code names only <NAME>.
            assert f'"{variable.removeprefix("OTEL_EXPORTER_OTLP_")}"' in otlp or variable in otlp, variable
        else:
            assert variable in source, variable


def test_every_variable_the_docs_name_is_one_there_is():
    """A TENANTGATE_*/OTEL_* name on any page is a setting, a variable read elsewhere, or the test and benchmark
    harnesses' own (read in tests/ or bench/)."""
    known = set(SETTINGS) | set(_table("Read elsewhere"))
    harness = "\n".join(p.read_text() for d in ("tests", "bench") for p in (ROOT / d).rglob("*.py"))
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    unknown = {
        f"{page.relative_to(ROOT)}: {name}"
        for page in pages
        for name in VARIABLE.findall(page.read_text())
        if name not in known
        and name not in harness
        # per-signal forms of a variable read elsewhere: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, ..._METRICS_HEADERS
        and re.sub(r"^OTEL_EXPORTER_OTLP_(TRACES|METRICS)_", "OTEL_EXPORTER_OTLP_", name) not in known
    }
    assert not unknown, sorted(unknown)
