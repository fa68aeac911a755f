"""optkern.datasets' arguments (38th hunt): ``load_file``'s ``path`` of another type raised os.stat's
unnamed "stat: path should be string, bytes, os.PathLike or integer" (an int was read as a file
descriptor: 0 "is not a regular file", 3 "no such file"), a bytes path was refused as the
"unsupported file type b'.csv'"; a ``label_column`` of another type (True, 1.0) was looked up as
the header name "True" / "1.0"; and ``dtype=None`` loaded float64 (NumPy's reading of None)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from optkern.datasets import load_digits, load_file


def _csv(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,label\n" + "\n".join(f"{i},{i * 3 % 7},{i % 3}" for i in range(12)) + "\n")
    return p


@pytest.mark.parametrize("path", [0, 3, 1.5, None, ["d.csv"]])
def test_a_path_of_another_type_is_a_type_error_naming_path(path):
    with pytest.raises(TypeError, match="^path: expected a str or os.PathLike"):
        load_file(path)


def test_a_bytes_path_loads_as_its_str(tmp_path):
    p = _csv(tmp_path)
    d = load_file(os.fsencode(str(p)))
    np.testing.assert_array_equal(d.x, load_file(str(p)).x)
    assert d.name == "d.csv"


@pytest.mark.parametrize("column", [True, 1.0, np.float64(0.0), [0]])
def test_a_label_column_of_another_type_is_a_type_error_naming_it(tmp_path, column):
    with pytest.raises(TypeError, match="^label_column: expected an int or a str"):
        load_file(_csv(tmp_path), label_column=column)


def test_label_column_ints_and_names_still_select(tmp_path):
    p = _csv(tmp_path)
    assert load_file(p, label_column=np.int64(-1)).num_classes == 3
    assert load_file(p, label_column=np.str_("label")).num_classes == 3
    assert load_file(p, label_column="2").num_classes == 3  # (the CLI's text)


def test_dtype_none_is_refused_by_name(tmp_path):
    with pytest.raises(TypeError, match="^dtype: expected a floating dtype, got None"):
        load_digits(None)
    with pytest.raises(TypeError, match="^dtype: expected a floating dtype, got None"):
        load_file(_csv(tmp_path), dtype=None)
    assert load_digits("float64").x.dtype == np.float64
