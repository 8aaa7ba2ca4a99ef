"""tenantgate.wire stays framework-free: it imports nothing from the gateway's upper floors."""

from __future__ import annotations

import ast
from pathlib import Path

import tenantgate.wire

WIRE = Path(tenantgate.wire.__file__).parent
FORBIDDEN = ("tenantgate.platform", "tenantgate.tenants", "tenantgate.observability", "tenantgate.settings")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_wire_modules_import_no_upper_floor() -> None:
    offending = {
        f"{path.name}: {name}"
        for path in sorted(WIRE.glob("*.py"))
        for name in _imports(path)
        if name.startswith(FORBIDDEN)
    }
    assert offending == set()
    assert len(list(WIRE.glob("*.py"))) >= 8  # the package is where the test thinks it is
