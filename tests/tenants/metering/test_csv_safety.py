"""CSV cells are safe to open in a spreadsheet (OWASP CSV injection), for any text a caller can put in an event."""

from __future__ import annotations

import csv
import io
import unicodedata

from hypothesis import example, given
from hypothesis import strategies as st

from tenantgate.tenants.metering.reports import csv_cells, csv_writer

_TRIGGERS = "=+-@\t\r\n\x00\x1b\u200b\ufeff\uff1d\uff0b\uff0d\uff20 \u00a0|%\"',;"
_hostile = st.text(alphabet=st.sampled_from(_TRIGGERS) | st.characters(), max_size=24) | st.builds(
    "".join, st.lists(st.sampled_from(["=", "+", "-", "@", " ", "\t", "\r", "cmd|' /C calc'!A0", "1+2", "SUM(A1)"]))
)


def _formula_like(cell: str) -> bool:
    """How a spreadsheet decides that a cell is a formula or hides something in its first character."""
    first = cell.lstrip(" \u00a0")[:1]
    if first in ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20"):
        return True
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in (cell[:1], first) if c)


@given(_hostile)
@example("=1+2+cmd|calc")
@example("\t=1")
@example(" @SUM(1)")
@example("-")
def test_no_written_cell_opens_as_a_formula_and_the_text_is_kept(value: str) -> None:
    buffer = io.StringIO()
    csv_writer(buffer).writerow(csv_cells([value, 42, None, True]))
    rows = list(csv.reader(io.StringIO(buffer.getvalue(), newline="")))
    assert len(rows) == 1  # a line break in the text does not end the row
    (cell, number, empty, flag) = rows[0]
    assert not _formula_like(cell), repr(cell)
    assert cell == value or cell == "'" + value
    if not _formula_like(value):
        assert cell == value  # harmless text is written as it is
    assert (number, empty, flag) == ("42", "", "True")
