"""Hunt 43f: ``lowp.from_half`` names its own argument when its native call refuses the array.

``from_half(h)`` hands ``h`` (made C-contiguous) to the native ``lowp_from_half(x, out, dtype)``,
whose refusal of a misaligned array (a float16 array read from a byte buffer at an odd offset)
named ``x``: no argument of ``from_half``. ``to_half(x)`` names its ``x`` for the same array."""

import numpy as np
import pytest

from optkern import lowp


def _misaligned(dtype, n=10):
    buf = bytearray(np.dtype(dtype).itemsize * n + 1)
    a = np.frombuffer(buf, dtype=dtype, count=n, offset=1)
    assert not a.flags.aligned
    return a


@pytest.mark.parametrize("dtype,fmt", [(np.float16, None), (np.uint16, "bfloat16"), (np.uint16, "float16")])
def test_from_half_names_h_for_a_misaligned_array(dtype, fmt):
    with pytest.raises(ValueError, match=r"^h: array data is misaligned"):
        lowp.from_half(_misaligned(dtype), fmt)


def test_to_half_names_x_for_a_misaligned_array():
    with pytest.raises(ValueError, match=r"^x: array data is misaligned"):
        lowp.to_half(_misaligned(np.float32))


def test_a_strided_misaligned_array_still_converts():
    h = _misaligned(np.float16, 20)
    h[...] = np.arange(20, dtype=np.float16)  # (a bytearray's frombuffer view is writable)
    # (not contiguous: converted through an aligned C-order copy, as before)
    np.testing.assert_array_equal(lowp.from_half(h[::2]), np.arange(0, 20, 2, dtype=np.float32))
    np.testing.assert_array_equal(lowp.from_half(h.copy()), np.arange(20, dtype=np.float32))
