"""Hunt 40d: ``rms_norm`` with its default eps refuses an input of no floating dtype as every
norm does, a TypeError naming ``x``.

The default eps is the machine epsilon of x's dtype, and ``np.finfo`` ran on the dtype before x
was checked: an int, bool or object array (a byte-swapped bfloat16 too) raised NumPy's
``ValueError: data type <class 'numpy.int64'> not inexact``, which names no argument and is not
the TypeError the same call raises with an eps given."""

import numpy as np
import pytest

from optkern import norm

BAD = [np.int64, np.int32, np.bool_, object, np.uint8]


@pytest.mark.parametrize("dtype", BAD)
def test_default_eps_refuses_x_as_a_given_eps_does(dtype):
    x = np.ones((2, 3), dtype)
    with pytest.raises(TypeError) as given:
        norm.rms_norm(x, (3,), eps=1e-6)
    with pytest.raises(TypeError, match=r"^x: expected float16, bfloat16, float32 or float64, got ") as default:
        norm.rms_norm(x, (3,))
    assert str(default.value) == str(given.value)


def test_default_eps_refuses_a_byte_swapped_bfloat16():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.ones((2, 3), np.float32).astype(np.dtype(ml_dtypes.bfloat16).newbyteorder(">"))
    with pytest.raises(TypeError, match=r"^x: expected float16, bfloat16, float32 or float64, got >V2"):
        norm.rms_norm(x, (3,))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_default_eps_is_still_finfo(dtype):
    x = np.array([[1e-4, -2e-4, 3e-4]], dtype)
    y, _ = norm.rms_norm(x, (3,))
    eps = float(np.finfo(np.float32 if dtype == np.float16 else dtype).eps)
    y2, _ = norm.rms_norm(x, (3,), eps=eps)
    assert y.tobytes() == y2.tobytes()
