"""The normalization R-operator (``norm_rop_fwd`` / ``norm_rop_bwd``: the MLP's exact Hessian-vector
product through train-mode batch norm and layer norm) on rows whose deviation h - mean overflows.

The forward and backward form x̂ scaled for such rows (rules::normalize_needs_scaling,
tests/test_norm_overflow.py) and are right; the R-operator formed x̂ = (h - mean) · rstd unscaled from
the same statistics: float32 rows like [3e38, 3e38, -3e38, 1.5e38] gave R{y} = inf, R{dh} = NaN and
non-finite parameter terms, where the exact values are O(1) (dh, R{dh}: O(1 / σ)). It now forms x̂ as the
forward does (rop::Norm), and other rows keep the plain formula's bits.

Reference: the array-generic float64 formulas of ``optkern.nn.normalization`` on each group divided by
its scale s (x̂, R{y}, R{x̂} and the parameter terms do not change; dh and R{dh} scale by 1 / s). The
directions (R{h}, dy, R{dy}) are of ordinary size here; directions near the dtype's max, whose group sums
overflow, are tests/test_hunt28_nn_rop_directions.py's (those groups are redone at a power-of-two scale).
"""

import numpy as np
import pytest

from optkern.nn import normalization as nz

EPS = 1e-5
BIG = {np.float32: 3e38, np.float64: 1.7e308}
RTOL = {np.float32: 5e-6, np.float64: 1e-13}
# dh and R{dh} of the overflowing rows are of order 1 / σ, subnormal: an absolute error of a few of
# the smallest subnormals
ATOL = {np.float32: 16 * 2.0**-149, np.float64: 16 * 2.0**-1074}


def _groups(dtype):
    """Groups (rows) of 4 whose deviation from the mean overflows (the first), whose rstd is below the
    scaling threshold without overflow (the second), and an ordinary one; and their scales."""
    big = BIG[dtype]
    rows = np.array([[big, big, -big, 0.5 * big], [1e30, -2e30, 3e29, 7e29], [1.0, 2.0, -3.0, 0.25]])
    return rows.astype(dtype), np.array([big, 1e30, 1.0])


def _problem(dtype, axis, seed=0):
    rng = np.random.default_rng(seed)
    rows, scale = _groups(dtype)
    h = rows if axis == 1 else np.ascontiguousarray(rows.T)  # groups: rows (layer norm) or columns (batch norm)
    s = scale[:, None] if axis == 1 else scale[None, :]
    N, D = h.shape
    dy, rh, rdy = (rng.standard_normal((N, D)).astype(dtype) for _ in range(3))
    g, b, vg, vb = (rng.standard_normal(D).astype(dtype) for _ in range(4))
    return h, s, (rh, g, b, dy, rdy, vg, vb)


def _native(h, rh, g, b, dy, rdy, vg, vb, axis):
    y, saved = nz.norm_forward(h, g, b, EPS, axis)
    ry, rsaved = nz.norm_rop_forward(rh, g, vg, vb, saved, axis)
    dh, rdh, rdg, rdb = nz.norm_rop_backward(dy, rdy, g, vg, saved, rsaved, axis)
    return {"ry": ry, "rxhat": rsaved[0], "m_xrh": rsaved[1], "dh": dh, "rdh": rdh, "rdg": rdg, "rdb": rdb}


def _reference(h, s, rh, g, b, dy, rdy, vg, vb, axis):
    """float64 generic formulas on h / s and R{h} / s (per group), eps / s² (the same x̂); m(x̂ R{h}),
    dh and R{dh} scaled back (by s, 1 / s, 1 / s)."""
    f = lambda a: np.asarray(a, np.float64)
    hs = f(h) / s
    _, (xhat, rstd) = nz._generic_forward(hs, f(g), f(b), EPS / s / s, axis)
    saved = nz.Saved(hs, None, xhat, rstd, axis)
    ry, rsaved = nz.norm_rop_forward(f(rh) / s, f(g), f(vg), f(vb), saved, axis)
    dh, rdh, rdg, rdb = nz.norm_rop_backward(f(dy), f(rdy), f(g), f(vg), saved, rsaved, axis)
    m_xrh = rsaved[1] * s.reshape(-1)
    return {"ry": ry, "rxhat": rsaved[0], "m_xrh": m_xrh, "dh": dh / s, "rdh": rdh / s, "rdg": rdg, "rdb": rdb}


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rop_of_overflowing_groups_matches_float64(dtype, axis):
    h, s, p = _problem(dtype, axis)
    with np.errstate(over="raise", invalid="raise"):  # (the reference on scaled data overflows nowhere)
        want = _reference(h, s, *p, axis)
    got = _native(h, *p, axis)
    for k, w in want.items():
        assert np.isfinite(got[k]).all(), k
        assert got[k].dtype == dtype
        # an error relative to each quantity's scale (R{x̂}, R{y}: O(1); dh, R{dh}: O(1 / s) per group)
        np.testing.assert_allclose(
            got[k], w, rtol=RTOL[dtype], atol=ATOL[dtype] + RTOL[dtype] * np.abs(w).max(), err_msg=k
        )
    for k in ("dh", "rdh"):  # each group at its own scale
        np.testing.assert_allclose(got[k] * s, want[k] * s, rtol=20 * RTOL[dtype], atol=20 * RTOL[dtype], err_msg=k)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_other_groups_keep_their_bits(dtype, axis):
    """The groups that need no scaling give the same bits beside an overflowing one as without it."""
    h, s, (rh, g, b, dy, rdy, vg, vb) = _problem(dtype, axis, seed=1)
    both = _native(h, rh, g, b, dy, rdy, vg, vb, axis)
    if axis == 1:  # drop the first row
        alone = _native(h[1:], rh[1:], g, b, dy[1:], rdy[1:], vg, vb, axis)
        pick = lambda k, a: a if k in ("rdg", "rdb") else a[1:]
    else:  # drop the first column
        c = lambda a: np.ascontiguousarray(a[:, 1:]) if a.ndim == 2 else np.ascontiguousarray(a[1:])
        alone = _native(c(h), c(rh), c(g), c(b), c(dy), c(rdy), c(vg), c(vb), axis)
        pick = lambda k, a: a[1:] if a.ndim == 1 else a[:, 1:]
    for k in ("ry", "rxhat", "m_xrh", "dh", "rdh") + (("rdg", "rdb") if axis == 0 else ()):
        np.testing.assert_array_equal(pick(k, both[k]), alone[k], err_msg=k)


def test_mlp_hvp_path_uses_the_native_kernels():
    """The functions above are the MLP's: with a native forward they run norm_rop_fwd / norm_rop_bwd
    (not the generic formulas of the reference)."""
    h, _, p = _problem(np.float32, 0)
    saved = nz.norm_forward(h, p[1], p[2], EPS, 0)[1]
    assert saved.native_saved is not None and nz._rop_module(saved) is not None
