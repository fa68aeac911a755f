"""load_file's CSV (hunt 48a): a line is cut into fields one way, the body's (np.loadtxt's).

The header rule (``_csv._fields``: the names, and which fields are words) cut a line with csv's
``skipinitialspace``, so a double quote after ``, `` opened a quoted field there; np.loadtxt,
which reads every data row, and the row-length check that guards it (``_check_row_lengths``)
take such a quote as a character of the field (as pandas and RFC 4180 do). The same line was two
lines: ``x, "height, cm", label`` was a header of 3 names above rows whose reader cut that line in
4, and a first line of names and numbers ``0, "p, q", 1`` was cut in 3 by the header rule (which
took it for a header) and in 4 by the row check (which named it as a ragged data row).
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern.datasets import DataError, _csv, load_file

LINES = ["a, b", 'x, "height, cm", label', '"a", "b, c"', ' "a,b",c', '1, "2,3", 4', '"a,b",c', "a,b , c"]


@pytest.mark.parametrize("line", LINES)
def test_the_header_rule_the_row_check_and_the_body_cut_a_line_alike(line):
    names = _csv._fields(line, "f: line 1")
    fields = _csv._row(line, "f: line 1")
    body = np.loadtxt([line], delimiter=",", ndmin=2, quotechar='"', dtype=str)
    assert len(names) == len(fields) == body.shape[1], (names, fields, body)


def _write(tmp_path, lines):
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_header_cut_otherwise_than_its_rows_is_not_taken_as_three_names(tmp_path):
    rows = [f"{i},{(3 * i) % 7},{i % 2}" for i in range(20)]
    # (read as 3 names, silently: as a row, the same line has 4 fields)
    with pytest.raises(DataError, match=r"has 4 names for 3 columns.*double quote after a space"):
        load_file(_write(tmp_path, ['x, "height, cm", label', *rows]))
    d = load_file(_write(tmp_path, ['x,"height, cm",label', *rows]))  # (quoted as CSV quotes: 3 names)
    assert len(d.y) == 20 and any("'label'" in n for n in d.notes)
