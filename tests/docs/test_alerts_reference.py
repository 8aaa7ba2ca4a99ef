"""docs/observability.md lists every alert the shipped rules define, and no page names an alert that is not one."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = yaml.safe_load((ROOT / "helm" / "tenantgate" / "files" / "prometheus-rules.yaml").read_text())
ALERTS = {rule["alert"] for group in RULES["groups"] for rule in group["rules"] if "alert" in rule}
ALERT_NAME = re.compile(r"\bTenantgate[A-Z][A-Za-z]+\b")


def _alerts_table() -> str:
    page = (ROOT / "docs" / "observability.md").read_text()
    return page.split("\n## Dashboards and alerts\n", 1)[1].split("\n## ", 1)[0]


def test_every_alert_has_a_row() -> None:
    rows = [line for line in _alerts_table().splitlines() if line.startswith("| `Tenantgate")]
    listed = {name for row in rows for name in ALERT_NAME.findall(row.split("|")[1])}
    assert len(ALERTS) >= 10  # the rules were read
    assert sorted(ALERTS - listed) == [], "alerts missing from docs/observability.md"
    assert sorted(listed - ALERTS) == [], "rows of docs/observability.md that no rule defines"


def test_every_alert_the_docs_name_is_a_rule() -> None:
    pages = [ROOT / "README.md", ROOT / "helm" / "tenantgate" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    unknown = {
        f"{page.relative_to(ROOT)}: {name}"
        for page in pages
        for name in ALERT_NAME.findall(page.read_text())
        if name not in ALERTS
    }
    assert unknown == set()
