"""Class names in a CSV's label column (iris' ``setosa``): ``optkern study --help`` shows
``--data mydata.csv --label-column species``, but every word in the file was refused ("not a
numeric CSV (could not convert string 'virginica' ...)"), and a headerless file's first row, with
its word, would have been taken for a header. Now the label column may hold words (numbered
0..K-1 in sorted order, said in the notes); any other column must hold numbers, and a word there is
named by its column and row."""

from __future__ import annotations

import numpy as np
import pytest

from optkern.datasets import DataError, load_file

NAMES = ["setosa", "versicolor", "virginica"]


def _rows(n=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4))
    y = np.arange(n) % 3
    return x, y, [",".join(f"{v:.6f}" for v in row) + "," + NAMES[c] for row, c in zip(x, y)]


def test_a_named_label_column_of_class_names_is_read_and_numbered_in_sorted_order(tmp_path):
    x, y, rows = _rows()
    p = tmp_path / "iris.csv"
    # (the file's first class is "virginica": the numbering is the sorted names', not the order seen)
    p.write_text("sepal_length,sepal_width,petal_length,petal_width,species\n" + "\n".join(rows[2:] + rows[:2]) + "\n")
    d = load_file(str(p), label_column="species")
    assert d.x.shape == (30, 4) and d.num_classes == 3
    np.testing.assert_array_equal(d.y, np.concatenate([y[2:], y[:2]]))
    assert d.notes[0] == "label from the CSV's 'species'"
    assert "labels {setosa, versicolor, virginica} renumbered 0..2 in sorted (class names) order" in d.notes
    # the features: the file's numbers, standardized per column
    xs = np.concatenate([x[2:], x[:2]])
    ref = (xs - xs.mean(0)) / xs.std(0)
    np.testing.assert_allclose(d.x, ref, atol=1e-5)


def test_a_headerless_file_with_class_names_keeps_its_first_row(tmp_path):
    x, y, rows = _rows(seed=1)
    p = tmp_path / "iris_nohead.csv"
    p.write_text("\n".join(rows) + "\n")
    d = load_file(str(p))
    assert d.x.shape == (30, 4), "the first data row was taken for a header"
    np.testing.assert_array_equal(d.y, y)
    assert d.notes[0] == "label from CSV column 5 of 5"


def test_quoted_class_names_and_spaces_are_one_class_each(tmp_path):
    _, y, rows = _rows(seed=2)
    quoted = [r.rsplit(",", 1)[0] + f', "{NAMES[c]}"' for r, c in zip(rows, y)]
    p = tmp_path / "q.csv"
    p.write_text("a,b,c,d,kind\n" + "\n".join(quoted) + "\n")
    d = load_file(str(p))
    assert d.num_classes == 3
    np.testing.assert_array_equal(d.y, y)


@pytest.mark.parametrize("where", [0, 17])
def test_a_word_in_a_feature_column_is_named_by_column_and_row(tmp_path, where):
    _, _, rows = _rows(seed=3)
    cells = rows[where].split(",")
    cells[2] = "n/a"
    rows[where] = ",".join(cells)
    p = tmp_path / "bad.csv"
    p.write_text("a,b,c,d,species\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=rf"feature column 3, data row {where + 1}: 'n/a'"):
        load_file(str(p), label_column="species")


def test_an_empty_class_name_is_refused_with_its_row(tmp_path):
    _, _, rows = _rows(seed=4)
    rows[5] = rows[5].rsplit(",", 1)[0] + ","
    p = tmp_path / "empty.csv"
    p.write_text("a,b,c,d,species\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"a label is empty \(row 6\)"):
        load_file(str(p))


def test_class_names_in_an_npz_are_numbered_too_and_bytes_are_refused(tmp_path):
    rng = np.random.default_rng(5)
    p = tmp_path / "n.npz"
    np.savez(p, x=rng.standard_normal((20, 3)), y=np.array(["dog", "cat"] * 10))
    d = load_file(str(p))
    np.testing.assert_array_equal(d.y, np.array([1, 0] * 10))
    np.savez(p, x=rng.standard_normal((20, 3)), y=np.array([b"dog", b"cat"] * 10))
    with pytest.raises(DataError, match="integers or class names"):
        load_file(str(p))


def test_a_numeric_file_still_reads_its_header_and_first_row_as_before(tmp_path):
    p = tmp_path / "num.csv"
    rows = "\n".join(f"{i * 0.5},{-i},{i % 2}" for i in range(20))
    p.write_text("f1,f2,label\n" + rows + "\n")
    d = load_file(str(p))
    assert d.x.shape == (20, 2) and d.notes[0] == "label from the CSV's 'label'"
    p.write_text(rows + "\n")
    assert load_file(str(p)).x.shape == (20, 2)
