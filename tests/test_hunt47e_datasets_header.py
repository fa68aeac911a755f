"""load_file's CSV header rule (hunt 47e): a header names every column, with words.

Two first lines were taken silently: a header with fewer (or more) names than the rows have
columns was skipped and its names went unread (``label`` above three columns: the label was
the last column, named "column 3"), and a first line ``0,0,a`` above rows of numbers was read as
a header (its word ``a`` where the next line has a number): the sample was dropped unseen and
``a`` named the label column. The rule (``_csv._is_header``, load_file's docstring) is now:
a word where the second line has a number makes a header, which must name every column with
words; anything else is refused, naming the line.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern.datasets import DataError, load_file

_ROWS = [f"{i},{(3 * i) % 7},{i % 2}" for i in range(20)]


def _write(tmp_path, lines):
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("header, names", [("label", 1), ("x,label", 2), ("a,b,c,label", 4), ('"y"', 1)])
def test_a_header_that_does_not_name_every_column_is_refused(tmp_path, header, names):
    with pytest.raises(DataError, match=rf"header line \(line 1\) has {names} names for 3 columns"):
        load_file(_write(tmp_path, [header, *_ROWS]))


def test_a_short_header_is_refused_with_word_labels_too(tmp_path):
    rows = [f"{i},{i + 1},{'ab'[i % 2]}" for i in range(20)]
    with pytest.raises(DataError, match=r"has 2 names for 3 columns"):
        load_file(_write(tmp_path, ["# made by hand", "x,species", *rows]))
    with pytest.raises(DataError, match=r"header line \(line 2\)"):
        load_file(_write(tmp_path, ["# made by hand", "x,species", *rows]))


@pytest.mark.parametrize("first", ["0,0,a", "1.5,2,label", '"0",x,1', "nan,f2,y"])
def test_a_first_line_of_names_and_numbers_is_refused(tmp_path, first):
    with pytest.raises(DataError, match=r"line 1 holds both names .* and numbers"):
        load_file(_write(tmp_path, [first, *_ROWS]))


def test_a_first_line_like_the_rows_is_still_data_and_a_header_of_names_still_a_header(tmp_path):
    # iris' headerless text labels: the word stands where the next line has one
    rows = [f"{i},{i % 5},{'ab'[i % 2]}" for i in range(20)]
    d = load_file(_write(tmp_path, ["0,0,a", *rows]))
    assert len(d.y) == 21 and d.num_classes == 2
    d = load_file(_write(tmp_path, ["f1,f2,label", *_ROWS]))
    assert len(d.y) == 20 and d.num_classes == 2
    assert any("'label'" in n for n in d.notes)
    d = load_file(_write(tmp_path, ["0,1,2", *_ROWS]))  # pandas' column numbers: a header
    assert len(d.y) == 20
    np.testing.assert_array_equal(np.bincount(d.y), [10, 10])


def test_a_ragged_first_row_is_named_as_such_not_as_a_header(tmp_path):
    # ``1,2,setosa`` above ``3,4``: the odd line is the second
    with pytest.raises(DataError, match=r"line 2 has 2 fields"):
        load_file(_write(tmp_path, ["1,2,setosa", "3,4", *[f"{i},{i},{'ab'[i % 2]}" for i in range(20)]]))


def test_a_quoted_name_with_a_comma_is_one_name(tmp_path):
    # R's write.csv and spreadsheets quote names: "height, cm" was cut in two, the header then had a
    # name more than the columns (its names went unread; now that is refused) and the label's name
    # could not be found
    d = load_file(_write(tmp_path, ['"height, cm",b,"my, label"', *_ROWS]), label_column="my, label")
    assert len(d.y) == 20 and any("'my, label'" in n for n in d.notes)
    d = load_file(_write(tmp_path, ['"height, cm",b,label', *_ROWS]))
    assert len(d.y) == 20 and any("'label'" in n for n in d.notes)
