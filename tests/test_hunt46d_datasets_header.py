"""load_file's CSV header detection (hunt 46d) agrees with how the body's numbers are read.

A first line ``1_0,2,3`` was taken as a header: ``1_0`` is no number to loadtxt, so it counted as a
name, and the file's first sample was dropped unseen (its cells became column names: "label from
the CSV's '3'"). The same cell on any later line is refused, naming it. A cell Python's
``float()`` reads (``1_0``, another script's digits ``١``) is a number written in a way the body
refuses, not a name: the line is data, and the body's error names the cell."""

from __future__ import annotations

import pytest

from optkern.datasets import DataError, load_file

_ROWS = [f"{i},{(3 * i) % 7},{i % 2}" for i in range(20)]


def _write(tmp_path, lines):
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("cell", ["1_0", "\u0661", " 1_0.5 "])
def test_a_first_line_with_a_python_number_is_data_and_refused_like_the_body(tmp_path, cell):
    first = f"{cell},2,1"
    with pytest.raises(DataError, match=rf"feature column 1, data row 1: '{cell.strip()}'"):
        load_file(_write(tmp_path, [first, *_ROWS]))
    # the same line second: the same cell named, one row later
    with pytest.raises(DataError, match=rf"feature column 1, data row 2: '{cell.strip()}'"):
        load_file(_write(tmp_path, [_ROWS[0], first, *_ROWS[1:]]))


def test_a_label_cell_like_1_0_on_the_first_line_is_read_as_on_any_other(tmp_path):
    first = "5,2,1_0"
    top = load_file(_write(tmp_path, [first, *_ROWS]))
    later = load_file(_write(tmp_path, [_ROWS[0], first, *_ROWS[1:]]))
    assert len(top.y) == len(later.y) == 21  # the first line is a sample, not column names
    assert top.num_classes == later.num_classes == 3
    assert sorted(top.y.tolist()) == sorted(later.y.tolist())
    assert not any("'1_0'" in n for n in top.notes)  # (was: "label from the CSV's '1_0'")


@pytest.mark.parametrize("header", ["a,b,label", "x_1,x_2,y", "1_0,2_0,label", "f1,f2,1_0"])
def test_headers_with_a_name_are_still_headers(tmp_path, header):
    ds = load_file(_write(tmp_path, [header, *_ROWS]))
    assert len(ds.y) == 20 and ds.num_classes == 2
