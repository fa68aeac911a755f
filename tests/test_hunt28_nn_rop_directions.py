"""The normalization R-operator (``norm_rop_fwd`` / ``norm_rop_bwd``) with DIRECTIONS near the dtype's max.

tests/test_norm_rop_overflow.py covers rows of h whose deviation overflows; here h is ordinary and a
direction (R{h}, dy, R{dy}, or R{x̂} made from a large R{h}) holds values near the max. The kernels'
plain group sums overflowed (float32 Σ of [1.8e38, 1.8e38, -1.8e38, ...] = inf): R{y}, R{x̂}, dh, R{dh}
and the parameter terms came out inf / NaN although every exact value is in range. The outputs are
linear in the directions (dh in dy; R{dh} and the parameter terms in (dy, R{dy}) and in (R{x̂},
m(x̂ R{h}), vγ, R{dy})), so the kernels redo such groups with the directions scaled by powers of two.

Reference: the array-generic float64 formulas of ``optkern.nn.normalization`` on the directions
divided by powers of two (exact), the results multiplied back (so float64 data near 1.7e308 stay in
range in the reference too).
"""

import numpy as np
import pytest

from optkern.nn import normalization as nz

EPS = 1e-5
BIG = {np.float32: 0.55 * 3.4028235e38, np.float64: 0.55 * 1.7976931348623157e308}
KBIG = {np.float32: 127, np.float64: 1023}  # the exponent of BIG: references scale by 2^-k
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


def _big_rows(rng, dtype, N, D, axis):
    """(N, D) values whose every group (column for axis 0, row for axis 1) starts ±[B, B, B, -B, -B, -B]:
    the running sum passes the max (times γ >= 0.7 too) though the group's sum is small; the others
    uniform in [-B/5, B/5]. Signs alternate across groups, so the parameter sums over rows (axis 1) of
    the leading columns are small too."""
    a = rng.uniform(-0.2, 0.2, (N, D))
    lead = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    if axis == 1:
        a[:, :6] = lead * (-1.0) ** np.arange(N)[:, None]
    else:
        a[:6, :] = lead[:, None] * (-1.0) ** np.arange(D)
    return (a * BIG[dtype]).astype(dtype)


def _problem(dtype, axis, seed):
    rng = np.random.default_rng(seed)
    N, D = (7, 5) if axis == 0 else (5, 7)  # (groups of 7)
    h = (3.0 * rng.standard_normal((N, D))).astype(dtype)  # (rstd near 1/3: outputs stay in range)
    g = rng.uniform(0.7, 1.0, D).astype(dtype)
    b, vg, vb = (rng.uniform(-0.5, 0.5, D).astype(dtype) for _ in range(3))
    return rng, h, g, b, vg, vb


def _ref_saved(h, g, b, axis):
    f = np.asarray(h, np.float64)
    _, (xhat, rstd) = nz._generic_forward(f, np.asarray(g, np.float64), np.asarray(b, np.float64), EPS, axis)
    return nz.Saved(f, None, xhat, rstd, axis)


def _ref_forward(h, g, b, vg, vb, rh, axis, k):
    """float64 R{y}, R{x̂}, m(x̂ R{h}) with R{h} scaled by 2^-k and the R{h}-linear parts scaled back."""
    saved = _ref_saved(h, g, b, axis)
    f = lambda a: np.asarray(a, np.float64)
    zero = np.zeros_like(f(vg))
    _, (rx, mx) = nz.norm_rop_forward(np.ldexp(f(rh), -k), f(g), zero, zero, saved, axis)
    rx, mx = np.ldexp(rx, k), np.ldexp(mx, k)
    return f(g) * rx + f(vg) * saved.xhat + f(vb), rx, mx


def _ref_backward(h, g, b, vg, dy, rdy, rx, mx, axis, a, c):
    """float64 dh, R{dh}, R{dγ}, R{dβ}: dy scaled by 2^-a, the R-side (R{x̂}, m, vγ) by 2^-c, R{dy} by 2^-(a+c)."""
    saved = _ref_saved(h, g, b, axis)
    f = lambda v: np.asarray(v, np.float64)
    dh, rdh, rdg, rdb = nz.norm_rop_backward(
        np.ldexp(f(dy), -a), np.ldexp(f(rdy), -a - c), f(g), np.ldexp(f(vg), -c), saved,
        (np.ldexp(f(rx), -c), np.ldexp(f(mx), -c)), axis,
    )  # fmt: skip
    with np.errstate(over="ignore"):  # (a parameter sum may be out of range: _close checks it is ±inf)
        return np.ldexp(dh, a), np.ldexp(rdh, a + c), np.ldexp(rdg, a + c), np.ldexp(rdb, a + c)


def _close(got, want, dtype, what):
    """got ≈ want where want is in the dtype's range (a few entries of the parameter sums are not:
    those must be ±inf of want's sign, as a correctly rounded result is)."""
    assert got.dtype == dtype, what
    top = float(np.finfo(dtype).max)
    inside = np.abs(want) <= top * (1 - 4 * RTOL[dtype])
    outside = np.abs(want) >= top * (1 + 4 * RTOL[dtype])
    assert inside.sum() >= 2, what  # (the case is in range, but for some parameter sums)
    assert np.isfinite(got[inside]).all(), f"{what}: not finite: {got}"
    np.testing.assert_array_equal(got[outside], np.sign(want[outside]) * np.inf, err_msg=what)
    scale = np.abs(want[inside]).max()
    np.testing.assert_allclose(got[inside], want[inside], rtol=RTOL[dtype], atol=RTOL[dtype] * scale, err_msg=what)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_with_rh_near_the_max(dtype, axis):
    rng, h, g, b, vg, vb = _problem(dtype, axis, 0)
    rh = _big_rows(rng, dtype, *h.shape, axis)
    y, saved = nz.norm_forward(h, g, b, EPS, axis)
    ry, (rx, mx) = nz.norm_rop_forward(rh, g, vg, vb, saved, axis)
    want = _ref_forward(h, g, b, vg, vb, rh, axis, KBIG[dtype])
    for got, w, what in zip((ry, rx, mx), want, ("R{y}", "R{x̂}", "m(x̂ R{h})")):
        _close(got, w, dtype, what)


# which directions are near the max: (dy, R{dy}, R{h}); R{dy} is large with either (a product of both)
CASES = {"dy": (True, True, False), "rdy": (False, True, False), "rh": (False, True, True)}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_with_directions_near_the_max(dtype, axis, case):
    big_dy, big_rdy, big_rh = CASES[case]
    rng, h, g, b, vg, vb = _problem(dtype, axis, 1)
    N, D = h.shape
    small = lambda: (0.3 * rng.standard_normal((N, D))).astype(dtype)
    dy = _big_rows(rng, dtype, N, D, axis) if big_dy else small()
    rdy = _big_rows(rng, dtype, N, D, axis) if big_rdy else small()
    rh = _big_rows(rng, dtype, N, D, axis) if big_rh else small()
    _, saved = nz.norm_forward(h, g, b, EPS, axis)
    _, (rx, mx) = nz.norm_rop_forward(rh, g, vg, vb, saved, axis)
    assert np.isfinite(rx).all() and np.isfinite(mx).all()
    got = nz.norm_rop_backward(dy, rdy, g, vg, saved, (rx, mx), axis)
    k = KBIG[dtype]
    a, c = (k if big_dy else 0), (k if big_rh else 0)
    if big_rdy and not (big_dy or big_rh):
        c = k
    want = _ref_backward(h, g, b, vg, dy, rdy, rx, mx, axis, a, c)
    for gt, w, what in zip(got, want, ("dh", "R{dh}", "R{dγ}", "R{dβ}")):
        _close(gt, w, dtype, what)


@pytest.mark.parametrize("axis", [0, 1])
def test_ordinary_groups_keep_their_bits_beside_a_large_one(axis):
    """Only the groups whose outputs overflowed are computed again: the others' bits are the plain ones."""
    dtype = np.float32
    rng, h, g, b, vg, vb = _problem(dtype, axis, 2)
    N, D = h.shape
    rh, dy, rdy = ((0.3 * rng.standard_normal((N, D))).astype(dtype) for _ in range(3))
    _, saved = nz.norm_forward(h, g, b, EPS, axis)
    plain_f = nz.norm_rop_forward(rh, g, vg, vb, saved, axis)
    plain_b = nz.norm_rop_backward(dy, rdy, g, vg, saved, plain_f[1], axis)
    big = _big_rows(rng, dtype, N, D, axis)
    sel = (slice(0, 1), slice(None)) if axis == 1 else (slice(None), slice(0, 1))  # group 0 large
    rh2, dy2, rdy2 = rh.copy(), dy.copy(), rdy.copy()
    rh2[sel], dy2[sel], rdy2[sel] = big[sel], big[sel], big[sel]
    keep = (slice(1, None), slice(None)) if axis == 1 else (slice(None), slice(1, None))
    f2 = nz.norm_rop_forward(rh2, g, vg, vb, saved, axis)
    assert np.isfinite(f2[0]).all() and np.isfinite(f2[1][0]).all()
    np.testing.assert_array_equal(f2[0][keep], plain_f[0][keep])
    np.testing.assert_array_equal(f2[1][0][keep], plain_f[1][0][keep])
    b2 = nz.norm_rop_backward(dy, rdy2 * 0 + rdy, g, vg, saved, plain_f[1], axis)  # (the same call again)
    np.testing.assert_array_equal(b2[1], plain_b[1])
    b3 = nz.norm_rop_backward(dy2, rdy2, g, vg, saved, plain_f[1], axis)
    np.testing.assert_array_equal(b3[0][keep], plain_b[0][keep])
    np.testing.assert_array_equal(b3[1][keep], plain_b[1][keep])
    assert np.isfinite(b3[0]).all() and np.isfinite(b3[1]).all()


@pytest.mark.parametrize("axis", [0, 1])
def test_a_few_huge_entries_in_a_large_batch(axis):
    """float32 (300, 57) with 3e38 in a few groups of R{h} and dy (the kernels' vector and tail loops):
    every result the float64 formulas put in range is finite and close, the others are ±inf, including
    R{y} = γ R{x̂} + ... where R{x̂} alone overflows (R{y} is formed at R{x̂}'s scale there)."""
    rng = np.random.default_rng(3)
    N, D = 300, 57
    h = rng.standard_normal((N, D)).astype(np.float32)
    g, b, vg, vb = (rng.standard_normal(D).astype(np.float32) for _ in range(4))
    rh, dy, rdy = (rng.standard_normal((N, D)).astype(np.float32) for _ in range(3))
    rh[:4, :5], rh[:4, 5], dy[0:3, 7] = 3e38, -3e38, 3e38
    _, saved = nz.norm_forward(h, g, b, EPS, axis)
    ry, (rx, mx) = nz.norm_rop_forward(rh, g, vg, vb, saved, axis)
    want_f = _ref_forward(h, g, b, vg, vb, rh, axis, 0)
    for got, w, what in zip((ry, rx, mx), want_f, ("R{y}", "R{x̂}", "m(x̂ R{h})")):
        _close(got, w, np.float32, what)
    rh_small = rng.standard_normal((N, D)).astype(np.float32)  # (the backward with finite R{x̂})
    _, (rx, mx) = nz.norm_rop_forward(rh_small, g, vg, vb, saved, axis)
    got_b = nz.norm_rop_backward(dy, rdy, g, vg, saved, (rx, mx), axis)
    want_b = _ref_backward(h, g, b, vg, dy, rdy, rx, mx, axis, 0, 0)
    for got, w, what in zip(got_b, want_b, ("dh", "R{dh}", "R{dγ}", "R{dβ}")):
        _close(got, w, np.float32, what)
