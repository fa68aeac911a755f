"""Weight norm where one factor of ``w = (g / ‖v‖) v`` leaves the normal range (45th hunt, f).

Forward: ``scale = g / ‖v‖`` was formed once per row and every ``w_j = scale v_j``. Where ‖v‖ is
near the dtype's max and g small, scale fell below the normal range and kept a few of its digits
while ``w`` itself is a normal number: float32 v ~ 3e37, g = 1e-3 gave w 32 ulps off, float64
v ~ 3e307, g = 1e-3 582 ulps (only the overflow of scale, g near the max, took ``g (v / ‖v‖)``).

Backward: a row whose ``k = s / ‖v‖²`` fell below the normal range takes ``(s / ‖v‖) (v / ‖v‖)``,
but ``s / ‖v‖`` could be subnormal too (float32 v ~ 1e20, g = 1e30, dw ~ 1e-40: dv ~ 3e-31, 69
ulps off), or round to 0 (float64 dw of a few subnormal steps: dv's v term dropped, dv 20 % off),
where the row's scaled redo keeps every digit.

The reference is exact rational arithmetic to 60 digits (``decimal``), independent of the kernels.
"""

from decimal import Decimal, localcontext

import numpy as np
import pytest

from optkern import norm


def wn_ref(v, g, dw):
    """(w, dg, dv) of rows of v (2-D) to 60 digits, as float64 arrays of the exact values' roundings."""
    w, dg, dv = (np.empty(v.shape), np.empty(v.shape[0]), np.empty(v.shape))
    with localcontext() as ctx:
        ctx.prec = 60
        for r in range(v.shape[0]):
            vr = [Decimal(float(a)) for a in v[r]]
            dr = [Decimal(float(a)) for a in dw[r]]
            gr = Decimal(float(g[r]))
            n = sum(a * a for a in vr).sqrt()
            s = sum(a * b for a, b in zip(dr, vr))
            w[r] = [float(gr * a / n) for a in vr]
            dg[r] = float(s / n)
            dv[r] = [float(gr / n * (d - s / n * a / n)) for d, a in zip(dr, vr)]
    return w, dg, dv


def ulps(got, want, dtype):
    """|got - want| in units of the spacing of the row's largest |want| (in ``dtype``)."""
    got = np.asarray(got, np.float64)
    top = np.abs(want).max(axis=-1, keepdims=True).astype(dtype)
    return float(np.max(np.abs(got - want) / np.spacing(top).astype(np.float64)))


ROWS = {
    np.float32: np.array([[3e37, 1e37, -2e37, 1.2345678e37, 7e36], [1.5e38, -9e37, 4e37, 2e37, -3e36]], np.float32),
    np.float64: np.array([[3e307, 1e307, -2e307, 1.2345678e307, 7e306], [4e307, -9e307, 4e306, 2e307, -3e306]]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_scale_below_normal_range(dtype):
    v = ROWS[dtype]
    g = np.array([1e-3, -3e-4], dtype)
    assert np.all(np.abs(g) / np.abs(v).max(axis=1) < np.finfo(dtype).tiny)  # (the case: |g| / ‖v‖ is below this)
    w, saved = norm.weight_norm(v, g)
    want, _, _ = wn_ref(v, g, np.zeros_like(v))
    assert np.isfinite(w).all() and np.all(np.abs(want) >= np.finfo(dtype).tiny)  # (w itself is normal)
    assert ulps(w, want, dtype) <= 1.5
    # the other layout (dim=1: rows along the last axis, a copy moved to rows first) takes the same path
    w1, _ = norm.weight_norm(np.ascontiguousarray(v.T), g, dim=1)
    np.testing.assert_array_equal(w1, w.T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_in_range_rows_keep_their_bits(dtype):
    """Rows of ordinary scale keep the one-multiply form (the fallback is for the rare rows only)."""
    rng = np.random.default_rng(7)
    v = rng.standard_normal((5, 33)).astype(dtype)
    g = rng.standard_normal(5).astype(dtype)
    w, saved = norm.weight_norm(v, g)
    scale = g / saved.norm.astype(dtype)
    np.testing.assert_array_equal(w, scale[:, None] * v)


def test_backward_s_over_norm_below_normal_range():
    v = np.array([[3e20, 1e20, -2e20, 1.2345678e20], [2e20, -1e20, 5e19, 1e20]], np.float32)
    g = np.array([1e30, -2e29], np.float32)
    dw = np.array([[1.3e-40, -2e-40, 3e-41, 7e-41], [-1.1e-40, 2.5e-40, 9e-41, 4e-41]], np.float32)
    _, saved = norm.weight_norm(v, g)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    _, want_dg, want_dv = wn_ref(v, g, dw)
    assert np.all(np.abs(want_dv).max(axis=1) >= np.finfo(np.float32).tiny)  # (dv is normal)
    assert ulps(dv, want_dv, np.float32) <= 4
    # dg = s / ‖v‖ is itself subnormal here: within the subnormal spacing
    assert np.max(np.abs(dg.astype(np.float64) - want_dg)) <= 2 * np.finfo(np.float32).smallest_subnormal


def test_backward_s_over_norm_rounds_to_zero():
    """float64: s / ‖v‖ ~ 1.2e-324 rounds to 0; dv = (g / ‖v‖) dw then lacked its v term (~0.2 of dw)."""
    tiny = np.finfo(np.float64).smallest_subnormal
    v = np.array([[3e20, 1e20, -2e20, 1.2345678e20]])
    g = np.array([1e300])
    dw = np.array([[1.0, 2.0, 2.0, 0.0]]) * tiny
    _, saved = norm.weight_norm(v, g)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    _, want_dg, want_dv = wn_ref(v, g, dw)
    assert float(want_dg[0]) == 0.0 and np.abs(want_dv).min() > np.finfo(np.float64).tiny  # (the case)
    assert ulps(dv, want_dv, np.float64) <= 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_scale_below_normal_range(dtype):
    """dv = (g / ‖v‖) (dw - k v) with g / ‖v‖ subnormal and dv normal: 150 ulps off (k and s in range)."""
    big = {np.float32: 3e37, np.float64: 3e307}[dtype]
    v = np.array([[big, 1e-10, 2.5]], dtype)
    g = np.array([1.2345e-3], dtype)
    dw = np.array([[1.0, 1e6, -3.3e6]], dtype)
    _, saved = norm.weight_norm(v, g)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    _, want_dg, want_dv = wn_ref(v, g, dw)
    assert np.abs(want_dv).max() >= np.finfo(dtype).tiny  # (dv is normal where g / ‖v‖ is not)
    assert ulps(dv, want_dv, dtype) <= 4
    assert ulps(dg, want_dg, dtype) <= 1


def test_scale_underflowing_to_zero():
    """A subnormal g over a large ‖v‖: g / ‖v‖ = 0 in float32 gave w = 0 and dv = 0 (w ~ 4e-39)."""
    v = np.array([[-4.7379955e08, -1.9063781e10]], np.float32)
    g = np.array([-4.042e-39], np.float32)
    dw = np.array([[1.488715e10, -7.1938153e-09]], np.float32)
    w, saved = norm.weight_norm(v, g)
    want_w, _, want_dv = wn_ref(v, g, dw)
    sub = float(np.finfo(np.float32).smallest_subnormal)
    assert np.max(np.abs(w.astype(np.float64) - want_w)) <= sub  # (subnormal results: to the last step)
    _, dv = norm.weight_norm_backward(dw, v, g, saved)
    assert np.max(np.abs(dv.astype(np.float64) - want_dv)) <= 2 * sub
    assert np.abs(want_dv).max() > 1000 * sub  # (the case: dv is not 0)


def test_backward_subnormal_norm():
    """A subnormal saved ‖v‖ kept few digits (v = ±1.4e-43: 0.3 % off): dg = s / ‖v‖ and dv with it."""
    v = np.array([[1.4e-43, -1.4e-43], [3e-41, 1e-41]], np.float32)
    g = np.array([1.3656698e-23, 2.5e-30], np.float32)
    dw = np.array([[-3.0837486e09, 1.105051e07], [1.5, -2.5]], np.float32)
    _, saved = norm.weight_norm(v, g)
    assert all(0 < n < np.finfo(np.float32).tiny for n in saved.norm)  # (the case)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    _, want_dg, want_dv = wn_ref(v, g, dw)
    for r in range(2):
        assert ulps(dg[r], want_dg[r], np.float32) <= 1
        assert ulps(dv[r], want_dv[r], np.float32) <= 4
