"""``optkern study --data`` on a ragged CSV: the error names the short (or long) row by its line
in the file. With word labels it talked about the label column instead (numpy's numeric read
stopped at the first word label, "could not convert string 'x' to float64 at row 0, column 3"),
and numpy's own row count skips blank and comment lines (and the header), so "row 3" was not
line 3; its advice to "use `usecols`" is not an option of optkern study."""

import pytest

from optkern import cli
from optkern.datasets import DataError, load_file

CASES = {
    # (file text, the line named, its fields, the data rows of the usual count, the rows, that count)
    "word labels, header": ("a,b,label\n1,2,x\n3,4,y\n5,6\n7,8,y\n", 4, 2, 3, 4, 3),
    "word labels, no header": ("1,2,x\n3,4,y\n5,6\n7,8,y\n", 3, 2, 3, 4, 3),
    "numbers, header": ("a,b,label\n1,2,0\n3,4\n5,6,1\n", 3, 2, 2, 3, 3),
    "numbers, blank and comment lines": ("1,2,0\n\n# note\n3,4,1\n5,6,1,9\n", 5, 4, 2, 3, 3),
    # the odd row first: named, not the rows after it
    "the first row short": ("1,2\n3,4,0\n5,6,1\n7,8,0\n", 1, 2, 3, 4, 3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_ragged_csv_is_named_by_its_line_not_by_the_label_column(case, tmp_path, capsys):
    text, line, k, many, rows, usual = CASES[case]
    p = tmp_path / "ragged.csv"
    p.write_text(text)
    want = rf"line {line} has {k} fields where {many} of the {rows} data rows have {usual}$"
    with pytest.raises(DataError, match=want):
        load_file(str(p))
    rc = cli.main(["study", "--data", str(p), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "columns" in err
    assert "could not convert" not in err and "usecols" not in err


def test_a_ragged_csv_with_a_label_column_by_name_names_the_line(tmp_path):
    p = tmp_path / "ragged.csv"
    p.write_text("label,a,b\nx,1,2\ny,3\nx,5,6\n")
    with pytest.raises(DataError, match=r"line 3 has 2 fields where 2 of the 3 data rows have 3$"):
        load_file(str(p), label_column="label")
