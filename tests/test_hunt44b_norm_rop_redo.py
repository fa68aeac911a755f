"""Batch norm's R-operator (``norm_rop_fwd`` / ``norm_rop_bwd``) on a column whose outputs overflow in
the plain pass, so that the column is redone with the directions scaled by a power of two
(rop::fwd_group_scaled, bwd_group_scaled, param_col_scaled in cpp/include/optkern/norm_rop.hpp).

The plain pass sums every group in double and rounds to float32 once; the redo summed in float32. A
float32 sum of 65536 terms of a common offset c is off by ~1e-5 of the sum (each addition rounds at
the partial sum's size), and the outputs subtract that mean from values near c: R{x̂} = r (R{h} -
m(R{h}) - ...) and dh = r (g - m(g) - ...) came out 6e-2 of their size off, R{dγ} 3e-4. The redo now
sums in double like the plain pass.

Column 0 of each case: rows 0 and 1 hold ±3e38 (their R{x̂} or dh, ±6e38 at r = 2, overflows: the
column takes the redo), the other rows c (1 + 1e-3 noise) with c = 1e33; h is symmetric about 0 with
h = 0 at rows 0 and 1 (x̂ = 0 there). Column 1 is ordinary (the plain pass). Reference: the array-generic
float64 formulas of ``optkern.nn.normalization`` on the same inputs, compared where they are in float32's
range.
"""

import numpy as np

from optkern.nn import normalization as nz

EPS = 1e-5
N = 65536
BIG, C = 3e38, 1e33


def _h(rng):
    """(N, 2) float32 with σ ≈ 0.5 (r ≈ 2); column 0 symmetric about 0 with h = 0 at rows 0, 1."""
    h = (0.5 * rng.standard_normal((N, 2))).astype(np.float32)
    half = h[2 : 2 + (N - 2) // 2, 0]
    h[2 + (N - 2) // 2 :, 0] = -half
    h[:2, 0] = 0.0
    return h


def _offset_column(rng):
    """±BIG at rows 0, 1, then c (1 + 1e-3 noise)."""
    col = (C * (1.0 + 1e-3 * rng.standard_normal(N))).astype(np.float32)
    col[0], col[1] = BIG, -BIG
    return col


def _f64_saved(h):
    hf = h.astype(np.float64)
    _, (xhat, rstd) = nz._generic_forward(hf, np.ones(2), np.zeros(2), EPS, 0)
    return nz.Saved(hf, None, xhat, rstd, 0)


def _rel_err(got, want, rows):
    """Max |got - want| over the rows (column 0) where want is in float32's range, over max |want| there."""
    w = want[rows, 0]
    ok = np.abs(w) < np.finfo(np.float32).max
    assert ok.sum() > N // 2
    return np.abs(got[rows, 0].astype(np.float64)[ok] - w[ok]).max() / np.abs(w[ok]).max()


def test_forward_redo_sums_in_double():
    rng = np.random.default_rng(3)
    h = _h(rng)
    rh = rng.standard_normal((N, 2)).astype(np.float32)
    rh[:, 0] = _offset_column(rng)
    g, vg, vb = np.float32([0.25, 1.5]), np.float32([0.5, -0.25]), np.float32([0.125, 2.0])
    _, saved = nz.norm_forward(h, g, np.zeros(2, np.float32), EPS, 0)
    ry, (rxhat, m_xr) = nz.norm_rop_forward(rh, g, vg, vb, saved, 0)
    f = lambda a: a.astype(np.float64)
    want_ry, (want_rx, want_mx) = nz.norm_rop_forward(f(rh), f(g), f(vg), f(vb), _f64_saved(h), 0)
    assert not np.isfinite(rxhat[:2, 0]).any()  # (±6e38: the column took the redo)
    # float32 sums in the redo: R{x̂} 6e-2 off, m(x̂ R{h}) 7e-4; in double 4e-6 and 1e-5 (the rounding of
    # m(R{h}) to float32, R{x̂} = r (R{h} - m(R{h}) ...) cancelling all but 1e-3 of it)
    assert _rel_err(rxhat, want_rx, slice(2, None)) < 5e-5
    assert _rel_err(ry, want_ry, slice(2, None)) < 5e-5
    np.testing.assert_allclose(m_xr, want_mx, rtol=1e-4)
    # the ordinary column: the plain pass
    np.testing.assert_allclose(rxhat[:, 1], want_rx[:, 1], rtol=1e-4, atol=1e-5 * np.abs(want_rx[:, 1]).max())


def test_backward_redo_sums_in_double():
    rng = np.random.default_rng(4)
    h = _h(rng)
    dy, rdy, rxhat = (rng.standard_normal((N, 2)).astype(np.float32) for _ in range(3))
    dy[:, 0] = _offset_column(rng)
    # R{x̂} = 2 at rows 0, 1: dy R{x̂} = ±6e38 overflows there (R{dγ}'s column redo), and cancels
    rxhat[:, 0] = 1.0
    rxhat[:2, 0] = 2.0
    g, vg = np.float32([1.0, 0.75]), np.float32([0.5, -1.25])
    m_xr = np.float32([1e-3, -2e-3])
    _, saved = nz.norm_forward(h, g, np.zeros(2, np.float32), EPS, 0)
    dh, rdh, rdg, rdb = nz.norm_rop_backward(dy, rdy, g, vg, saved, (rxhat, m_xr), 0)
    f = lambda a: a.astype(np.float64)
    want = nz.norm_rop_backward(f(dy), f(rdy), f(g), f(vg), _f64_saved(h), (f(rxhat), f(m_xr)), 0)
    assert not np.isfinite(dh[:2, 0]).any()  # (±6e38: the column took the redo)
    # float32 sums in the redo: dh 6e-2 off, R{dh} 4e-5, R{dγ} 3e-4; in double 6e-6, 1.3e-7, 2.4e-8
    assert _rel_err(dh, want[0], slice(2, None)) < 5e-5
    assert _rel_err(rdh, want[1], slice(2, None)) < 1e-6
    np.testing.assert_allclose(rdg, want[2], rtol=1e-6)
    np.testing.assert_allclose(rdb, want[3], rtol=1e-6, atol=1e-6 * np.abs(want[3]).max())
