"""x̂ = (x - mean) · rstd where x - mean itself exceeds the dtype's range, though x is finite.

The statistics of such a row or channel take the scaled path (rules/norm.hpp) and are right, but
x - mean was formed unscaled: float32 layer_norm([[3e38, 3e38, -3e38]]) gave y = [0.71, 0.71, -inf]
and dx = NaN (exact: -1.41 and finite), as did batch, group and instance norm. Now a row or channel
whose rstd is small enough that x - mean may overflow (rules::normalize_needs_scaling) forms it as
(x 2^-e - mean 2^-e)(rstd 2^e), which rounds as (x - mean) · rstd wherever that is in range: other
rows keep the formula and its bits.

References: float64 on the data divided by its scale (x̂ and y do not change; dx scales by 1 / scale).
(Eval mode's running statistics never need it: a running_var holding such a σ² is itself beyond the
range, and torch's eval forms x - running_mean unscaled as well.)
"""

import numpy as np
import pytest

from optkern import norm

BIG = {np.float32: 3e38, np.float64: 1.7e308}
RTOL = {np.float32: 2e-5, np.float64: 1e-12}
# rstd of these rows is subnormal (1 / 2.8e38 in float32): dx carries an absolute error of a few
# of the smallest subnormals
ATOL = {np.float32: 16 * 2.0**-149, np.float64: 16 * 2.0**-1074}


def _sd(xs, axis, scale, eps=1e-5):
    """float64 sqrt(var + eps / scale²) of scaled data xs = x / scale."""
    return np.sqrt(((xs - xs.mean(axis=axis, keepdims=True)) ** 2).mean(axis=axis, keepdims=True) + eps / scale / scale)


def _xhat(xs, axis, scale):
    """float64 x̂ of x = xs · scale."""
    return (xs - xs.mean(axis=axis, keepdims=True)) / _sd(xs, axis, scale)


def _dx_ref(dy, xs, axis, scale):
    """float64 dx = rstd (dy - mean(dy) - x̂ mean(dy x̂)) of x = xs · scale (weight 1)."""
    xh = _xhat(xs, axis, scale)
    sd = _sd(xs, axis, scale) * scale
    g = dy.astype(np.float64)
    return (g - g.mean(axis=axis, keepdims=True) - xh * (g * xh).mean(axis=axis, keepdims=True)) / sd


def _rows(dtype):
    """Rows whose deviation from the mean overflows (the first), or does not (the others: one at a
    scale where rstd is below the threshold, one ordinary)."""
    big = BIG[dtype]
    return np.array([[big, big, -big, 0.5 * big], [1e30, -2e30, 3e29, 7e29], [1.0, 2.0, -3.0, 0.25]], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_forward_and_backward(dtype):
    x = _rows(dtype)
    scale = np.array([BIG[dtype], 1e30, 1.0])[:, None]
    dy = np.array([[1.0, 0.0, 0.0, -2.0], [0.5, 1.0, -1.0, 2.0], [1.0, -1.0, 0.5, 0.0]], dtype)
    y, s = norm.layer_norm(x, 4)
    xs = x.astype(np.float64) / scale
    np.testing.assert_allclose(y, _xhat(xs, 1, scale), rtol=RTOL[dtype], atol=RTOL[dtype])
    dx, dw, db = norm.layer_norm_backward(dy, x, None, s)
    assert np.isfinite(dx).all() and np.isfinite(dw).all()
    np.testing.assert_allclose(dx, _dx_ref(dy, xs, 1, scale), rtol=RTOL[dtype], atol=ATOL[dtype])
    np.testing.assert_allclose(dw, (dy * _xhat(xs, 1, scale)).sum(axis=0), rtol=RTOL[dtype], atol=RTOL[dtype])
    # where x - mean is in range: the formula (x - mean) · rstd of the saved statistics, to the bit
    with np.errstate(over="ignore"):
        formula = (x[1:] - s.mean[1:, None]) * s.rstd[1:, None]
    np.testing.assert_array_equal(y[1:], formula)


# each row of _rows as one channel ((N, C) columns or an (N, C, S) channel) of batch norm, or one group /
# instance: (to x, back to rows)
LAYOUTS = {
    "batch_norm": (lambda r: np.ascontiguousarray(r.T), lambda a: a.T),
    "batch_norm_spatial": (
        lambda r: np.ascontiguousarray(r.reshape(3, 2, 2).transpose(1, 0, 2)),
        lambda a: a.transpose(1, 0, 2).reshape(3, 4),
    ),
    "group_norm": (lambda r: r.reshape(3, 1, 4), lambda a: a.reshape(3, 4)),
    "instance_norm": (lambda r: r.reshape(3, 1, 4), lambda a: a.reshape(3, 4)),
    "instance_norm_buffers": (lambda r: r.reshape(3, 1, 4), lambda a: a.reshape(3, 4)),
}


def _forward_backward(fn, x, dy):
    if fn.startswith("batch_norm"):
        y, s = norm.batch_norm(x)
        return y, norm.batch_norm_backward(dy, x, None, s)[0]
    if fn == "group_norm":
        y, s = norm.group_norm(x, 1)
        return y, norm.group_norm_backward(dy, x, None, s)[0]
    buffers = (np.zeros(1, x.dtype), np.ones(1, x.dtype)) if fn == "instance_norm_buffers" else (None, None)
    y, s = norm.instance_norm(x, None, None, *buffers)
    return y, norm.instance_norm_backward(dy, x, None, s)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn", list(LAYOUTS))
def test_channel_and_group_norms(dtype, fn):
    to_x, to_rows = LAYOUTS[fn]
    rows = _rows(dtype)
    scale = np.array([BIG[dtype], 1e30, 1.0])[:, None]
    dy = np.array([[1.0, 0.0, 0.0, -2.0], [0.5, 1.0, -1.0, 2.0], [1.0, -1.0, 0.5, 0.0]], dtype)
    y, dx = (to_rows(a) for a in _forward_backward(fn, to_x(rows), to_x(dy)))
    xs = rows.astype(np.float64) / scale
    np.testing.assert_allclose(y, _xhat(xs, 1, scale), rtol=RTOL[dtype], atol=RTOL[dtype])
    assert np.isfinite(dx).all()
    np.testing.assert_allclose(dx, _dx_ref(dy, xs, 1, scale), rtol=RTOL[dtype], atol=ATOL[dtype])
