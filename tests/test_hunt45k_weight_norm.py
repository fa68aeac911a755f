"""Weight norm's backward: a subnormal g in the scaled redo, and one-element slices (45th hunt, k).

The redo of a rare row (dw near the max, a subnormal ‖v‖, ...) formed ``g / (‖v‖ 2^-b)`` from the
unscaled g: a subnormal g kept that factor's few digits while dv, scaled back by the huge dw's
exponent, is a normal number. And a slice of one element has ``w = g sign(v)``: the exact dv is 0,
where the formula left rounding noise (1.2e12 for v = 1e-20, g = 1, dw = 1; inf for a subnormal v).

The reference is exact rational arithmetic to 60 digits (``decimal``), independent of the kernels.
"""

import numpy as np
import pytest

from optkern import norm
from test_hunt45f_weight_norm_range import ulps, wn_ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_subnormal_g_huge_dw(dtype):
    fi = np.finfo(dtype)
    v = np.array([[1.0, -0.75, 0.3], [2.5, 1.25, -0.6]], dtype)
    g = np.array([fi.tiny * 0.0123, -fi.tiny * 0.3711], dtype)  # subnormal: 6 and 22 significant bits (f32)
    dw = np.array([[fi.max / 4, fi.max / 8, -fi.max / 5], [fi.max / 3, -fi.max / 16, fi.max / 7]], dtype)
    _, saved = norm.weight_norm(v, g)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    _, want_dg, want_dv = wn_ref(v, g, dw)
    assert np.all(np.abs(want_dv).max(axis=1) >= fi.tiny) and np.all(np.abs(g) < fi.tiny)  # (the case)
    for r in range(2):
        assert ulps(dv[r], want_dv[r], dtype) <= 4
        assert ulps(dg[r], want_dg[r], dtype) <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("v0", "g0", "dw0"),
    [(1e-20, 1.0, 1.0), (-3.5, 2.0, -7.25), (1e-40, 1.0, 1.0), (None, 3.0, 2.0), (1e30, 1e-30, 5e20)],
)
def test_one_element_slices_dv_is_zero(dtype, v0, g0, dw0):
    sub = np.finfo(dtype).smallest_subnormal
    v = np.array([[-3 * sub if v0 is None else v0]], dtype)  # (None: a subnormal v, -3 steps)
    g = np.array([g0], dtype)
    dw = np.array([[dw0]], dtype)
    _, saved = norm.weight_norm(v, g)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    assert dv[0, 0] == 0
    assert dg[0] == dw[0, 0] * np.sign(v[0, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_element_rows_in_a_matrix(dtype):
    """dim=0 of a 1-D v: every slice is one element (rows of M = 1)."""
    v = np.array([1e-20, -2.0, 3e-39, 4.0], dtype)
    g = np.array([1.0, 0.5, -2.0, 1e-3], dtype)
    dw = np.array([1.0, 3.0, -1.0, 1e30], dtype)
    _, saved = norm.weight_norm(v, g, dim=0)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    np.testing.assert_array_equal(dv, np.zeros_like(dv))
    np.testing.assert_array_equal(dg, dw * np.sign(v))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_one_element_non_finite_stays_non_finite(bad):
    """NaN or ±inf in dw, g or v (the forward refuses it in v: the saved norm of a finite one) as before."""
    _, saved = norm.weight_norm(np.array([[1.0]], np.float32), np.array([1.0], np.float32))
    for v0, g0, dw0 in [(bad, 1.0, 1.0), (1.0, bad, 1.0), (1.0, 1.0, bad)]:
        v = np.array([[v0]], np.float32)
        dw = np.array([[dw0]], np.float32)
        _, dv = norm.weight_norm_backward(dw, v, np.array([g0], np.float32), saved)
        assert not np.isfinite(dv).all()
