"""Hunt 56j: ``init.trunc_normal_`` with ``[a, b]`` wider than the array's dtype fills it silently.

The draws were clipped to ``[a, b]`` in float64, cast, then clipped to the dtype's values inside
``[a, b]``: the values written were right (finite, within the dtype's range), but a float16 fill with
``std=1e5, a=-1e6, b=1e6`` cast draws past 65504 to inf first, and NumPy warned "overflow encountered
in cast" -- an error under ``-W error`` (the project's test setting), raised out of a valid call.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import init


@pytest.mark.parametrize("dtype, big", [(np.float16, 1e6), (np.float32, 1e300)])
def test_trunc_normal_wider_than_the_dtype(dtype, big):
    w = np.zeros((64, 33), dtype)
    init.trunc_normal_(w, std=big / 10, a=-big, b=big, rng=3)
    top = np.finfo(dtype).max
    assert np.isfinite(w).all() and (np.abs(w) <= top).all()
    assert (np.abs(w) == top).any()  # (draws past the range are clipped to its largest value)
    # the same draws in float64, clipped to the dtype's range and rounded
    ref = np.zeros((64, 33))
    init.trunc_normal_(ref, std=big / 10, a=-big, b=big, rng=3)
    np.testing.assert_array_equal(w, np.clip(ref, -top, top).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_trunc_normal_bounds_inside_the_dtype_unchanged(dtype):
    """(within the range: every value in [a, b], as before)"""
    w = np.zeros(4097, dtype)
    init.trunc_normal_(w, mean=0.1, std=1.0, a=-0.3, b=0.7, rng=5)
    assert (w >= -0.3).all() and (w <= 0.7).all()
    assert w.min() < -0.29 and w.max() > 0.69
