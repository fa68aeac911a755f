"""``first_relaid_``'s ``layout`` and ``first_readonly_`` / ``first_relaid_``'s items refused by name (hunt 52e).

``layout`` was a ``py::array_t<int64_t>``: an int32 array or a list was converted (a copy made at
every ZeRO-1 step, had the caller made one), a float array refused by pybind11 naming nothing. A
non-array item was "arrays: expected NumPy arrays", naming no index. Both as every array argument
is refused now (py_arrays.hpp: check_array, raise_fault).
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import _cpu

A = np.zeros((2, 3))
WORDS = np.array([2, 2, 3, 24, 8], np.int64)


def test_the_layout_words_run():
    assert _cpu.first_relaid_([A], WORDS) == -1
    assert _cpu.first_relaid_([A.T], WORDS) == 0


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (WORDS.astype(np.int32), TypeError, r"^layout: expected int64, got int32$"),
        (WORDS.astype(float), TypeError, r"^layout: expected int64, got float64$"),
        (WORDS.tolist(), TypeError, r"^layout: expected a numpy\.ndarray, got list$"),
        (np.repeat(WORDS, 2)[::2], ValueError, r"^layout: array must be C-contiguous$"),
    ],
)
def test_a_wrong_layout_is_refused_by_name(bad, error, message):
    with pytest.raises(error, match=message):
        _cpu.first_relaid_([A], bad)


@pytest.mark.parametrize("fn", [lambda l: _cpu.first_readonly_(l), lambda l: _cpu.first_relaid_(l, WORDS)])
def test_a_non_array_item_is_named_with_its_index(fn):
    with pytest.raises(TypeError, match=r"^arrays\[1\]: expected a numpy\.ndarray, got list$"):
        fn([A, [1.0]])
