"""Hunt 40i: ``lowp.to_half`` (and ``stochastic_round``) take the half type in the spellings
``from_half`` takes -- the strings 'float16' / 'bfloat16', NumPy dtype objects and scalar types
(``np.float16``, ``ml_dtypes.bfloat16``) -- where ``to_half`` refused ``np.dtype('float16')`` that
``from_half`` accepted (and both refused ``np.float16``); anything else is refused naming
``dtype``: a TypeError for what is no dtype, a ValueError for another dtype."""

import numpy as np
import pytest

from optkern import lowp

ml_dtypes = pytest.importorskip("ml_dtypes")

SPELLINGS = {
    "float16": ["float16", np.float16, np.dtype(np.float16), np.dtype("<f2") if np.little_endian else np.dtype(">f2")],
    "bfloat16": ["bfloat16", ml_dtypes.bfloat16, np.dtype(ml_dtypes.bfloat16)],
}
CASES = [(fmt, s) for fmt, ss in SPELLINGS.items() for s in ss]
X = np.array([1.0, -2.5, 3.140625, 1e-3], np.float32)


@pytest.mark.parametrize("fmt,spelling", CASES)
def test_to_half_and_from_half_take_each_spelling(fmt, spelling):
    want = lowp.to_half(X, fmt)
    got = lowp.to_half(X, spelling)
    assert got.dtype == want.dtype and np.array_equal(got.view(np.uint16), want.view(np.uint16))
    assert np.array_equal(lowp.to_half(X, spelling, raw=True), want.view(np.uint16))
    sr = lowp.stochastic_round(X, spelling, seed=3, raw=True)
    assert np.array_equal(sr, lowp.stochastic_round(X, fmt, seed=3, raw=True))
    assert np.array_equal(lowp.from_half(want.view(np.uint16), spelling), lowp.from_half(want))
    assert np.array_equal(lowp.from_half(want, spelling), lowp.from_half(want))


NOT_DTYPES = [5, 1.5, True, object(), [np.float16]]
OTHER_DTYPES = [
    "float32",
    "f2",
    "half",
    np.float32,
    np.dtype(np.float64),
    np.uint16,
    np.dtype(">f2"),
    np.dtype(ml_dtypes.bfloat16).newbyteorder(">"),
    np.dtype(ml_dtypes.float8_e4m3fn),
]


@pytest.mark.parametrize("bad", NOT_DTYPES, ids=lambda v: type(v).__name__)
def test_what_is_no_dtype_is_a_type_error_naming_dtype(bad):
    msg = r"^dtype: expected 'bfloat16' or 'float16' \(a string, NumPy dtype or scalar type\), got "
    with pytest.raises(TypeError, match=msg):
        lowp.to_half(X, bad)
    with pytest.raises(TypeError, match=msg):
        lowp.from_half(np.zeros(3, np.uint16), bad)


@pytest.mark.parametrize("bad", OTHER_DTYPES, ids=str)
def test_another_dtype_is_a_value_error_naming_dtype(bad):
    with pytest.raises(ValueError, match=r"^dtype: expected 'bfloat16' or 'float16'.*, got "):
        lowp.to_half(X, bad)
    with pytest.raises(ValueError, match=r"^dtype: expected 'bfloat16' or 'float16'.*, got "):
        lowp.from_half(np.zeros(3, np.uint16), bad)


def test_a_dtype_disagreeing_with_a_half_array_is_still_refused():
    h = lowp.to_half(X, "float16")
    with pytest.raises(TypeError, match=r"^dtype: array is float16, but dtype="):
        lowp.from_half(h, ml_dtypes.bfloat16)
