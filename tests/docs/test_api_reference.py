"""docs/api.md lists an exported usage event's fields as the code exports them: every one, in order, none other."""

from __future__ import annotations

import re
from pathlib import Path

from tenantgate.tenants.metering.usage_event import EXPORT_FIELDS

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "api.md").read_text()


def test_the_event_fields_table_is_the_export_in_order() -> None:
    section = PAGE.split("\n## Billing exports\n", 1)[1].split("\n## ", 1)[0]
    table = section.split("| field | what |", 1)[1].split("\n\n", 1)[0]
    documented = [name for row in table.splitlines()[2:] for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])]
    assert documented == list(EXPORT_FIELDS)
