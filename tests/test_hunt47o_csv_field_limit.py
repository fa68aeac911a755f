"""A CSV line with a field over Python's csv reader limit (128 KiB): its ``_csv.Error`` ("field
larger than field limit (131072)") named neither the file nor the line, and was no DataError; now
refused as one naming both, wherever the reader cuts a line (the header test's first two lines,
the row-length check of every line)."""

import pytest

from optkern.datasets import DataError, load_file

BIG = "x" * 200_000


@pytest.mark.parametrize(
    "text, line",
    [
        (f"{BIG},b,label\n1,2,3\n4,5,6\n", 1),  # (the header line)
        (f'# a comment\n\nf,g,label\n1,"{BIG}",3\n4,5,6\n', 4),  # (the second content line)
        (f'1,2,3\n1,2,3\n4,5,6\n1,"{BIG}",2,3\n', 4),  # (a body row, cut by the row-length check)
    ],
    ids=["header-line", "second-line", "body-row"],
)
def test_a_field_over_the_csv_limit_is_a_data_error_naming_the_line(tmp_path, text, line):
    path = tmp_path / "big.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=rf"big\.csv: line {line}: not readable as CSV \(field larger than field limit"):
        load_file(str(path))


def test_fields_below_the_limit_still_read(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text('"' + "n" * 100_000 + '",b,label\n' + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    ds = load_file(str(path))
    assert ds.x.shape == (20, 2)
