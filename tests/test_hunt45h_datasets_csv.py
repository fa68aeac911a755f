"""load_file's CSV (hunt 45h): a feature cell Python's ``float()`` reads but loadtxt does not.

``1_000`` or another script's digits (``١``) in a feature column failed loadtxt's numeric read, and
the word-label path then took the cell as a number (``float("1_000")`` is 1000): the file loaded,
and its number labels were read as class names, numbered in text order (``10`` before ``2``)."""

import pytest

from optkern.datasets import DataError, load_file


def _write(tmp_path, cell):
    rows = [f"{i},{i % 7},{1 + i % 10}" for i in range(40)]
    rows[3] = f"{cell},3,4"
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("cell", ["1_000", "\u0663", "0x3"])
def test_a_cell_loadtxt_refuses_is_named(tmp_path, cell):
    with pytest.raises(DataError, match=rf"feature column 1, data row 4: '{cell}'; only the label column"):
        load_file(_write(tmp_path, cell))


@pytest.mark.parametrize("cell", ["1000", " +1.5e3 ", "1E3", ".5", "5."])
def test_plain_numbers_keep_number_labels(tmp_path, cell):
    ds = load_file(_write(tmp_path, cell))
    assert ds.num_classes == 10 and ds.y[:11].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert "class names" not in " ".join(ds.notes)


@pytest.mark.parametrize("cell", ["nan", "-inf", "Infinity"])
def test_non_finite_cells_are_named_as_such(tmp_path, cell):
    with pytest.raises(DataError, match="features contain NaN or Inf"):
        load_file(_write(tmp_path, cell))
