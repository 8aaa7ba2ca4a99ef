"""CSV cells are safe to open in a spreadsheet (OWASP CSV injection), for any text a caller can put in an event."""

from __future__ import annotations

import csv
import io
import unicodedata

from hypothesis import example, given
from hypothesis import strategies as st

from tenantgate.tenants.metering.reports import csv_cells, csv_writer

# Every space separator (category Zs) a spreadsheet may skip before a formula, not only " " and NBSP.
_SPACES = "".join(chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Zs")
_TRIGGERS = "=+-@\t\r\n\x00\x1b\u200b\u2060\ufeff\u2028\u2029\uff1d\uff0b\uff0d\uff20|%\"',;" + _SPACES
_hostile = (
    st.text(alphabet=st.sampled_from(_TRIGGERS) | st.characters(), max_size=24)
    | st.builds(
        "".join,
        st.lists(st.sampled_from(["=", "+", "-", "@", " ", "\t", "\r", "cmd|' /C calc'!A0", "1+2", "SUM(A1)"])),
    )
    | st.builds(  # a run of blanks of any kind, then a formula
        "".join,
        st.tuples(
            st.text(alphabet=st.sampled_from(_SPACES + "\u200b\ufeff\u2028"), min_size=1, max_size=4),
            st.sampled_from(["=1+2", "+1", "-1", "@SUM(A1)", "\uff1d1", "plain", ""]),
        ),
    )
)


def _formula_like(cell: str) -> bool:
    """How a spreadsheet decides that a cell is a formula or hides something before its first visible character:
    it may skip any space (category Zs) and invisible character (controls, format characters, line breaks)."""
    for char in cell:
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Zl", "Zp"):
            return True
        if category != "Zs":
            return char in ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
    return False


@given(_hostile)
@example("=1+2+cmd|calc")
@example("\t=1")
@example(" @SUM(1)")
@example("-")
@example("\u2003=1+2")  # an em space
@example('\u3000=HYPERLINK("http://x")')  # an ideographic space
@example("\u202f\u205f@SUM(1)")
@example("\u1680-1")
@example(" \u00a0 \u200b")
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
