"""A headerless CSV whose second line is ragged (``1,2,setosa`` then ``3,4``) had its first data
row taken for a header (the second line has no word where it has one), and the ragged-row error
then counted the rows without it: with one more full row it named the full row (line 3) as the odd
one, and with no more rows it loaded ``3,4`` as one sample. A "header" holding numbers as well as
words may be data: its line now counts with the rows, and the error names the short line."""

from __future__ import annotations

import pytest

from optkern import datasets
from optkern.datasets import DataError


@pytest.mark.parametrize(
    "text, line, k, many, rows",
    [
        ("1,2,setosa\n3,4\n5,6,versicolor\n", 2, 2, 2, 3),
        ("1,2,setosa\n3,4\n5,6,versicolor\n7,8,setosa\n", 2, 2, 3, 4),
        ("1,2,setosa\n3,4\n", 2, 2, 1, 2),
        ("# iris\n\n1,2,setosa\n3,4\n5,6,versicolor\n", 4, 2, 2, 3),
        ("1,2,setosa\n3,4,5,6\n5,6,versicolor\n", 2, 4, 2, 3),
    ],
)
def test_a_first_row_taken_for_a_header_counts_in_the_ragged_row_error(tmp_path, text, line, k, many, rows):
    p = tmp_path / "ragged.csv"
    p.write_text(text)
    want = f"line {line} has {k} fields where {many} of the {rows} data rows have 3"
    with pytest.raises(DataError, match=want):
        datasets.load_file(str(p))


def test_a_header_of_names_still_is_one(tmp_path):
    # (names only: not data, not counted; the ragged row named as before)
    p = tmp_path / "named.csv"
    p.write_text("a,b,species\n3,4\n5,6,versicolor\n7,8,setosa\n")
    with pytest.raises(DataError, match="line 2 has 2 fields where 2 of the 3 data rows have 3"):
        datasets.load_file(str(p))
    p.write_text("a,b,species\n" + "".join(f"{i},{i + 1},{'ab'[i % 2]}\n" for i in range(20)))
    d = datasets.load_file(str(p))
    assert len(d.y) == 20
