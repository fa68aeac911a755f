"""The softmax cross-entropy R-operator (``xent_rop``: rules::xent_rop_row, the MLP's loss Hessian
times a direction) with DIRECTIONS r near the dtype's max.

Its result v = p (r - <p, r>) (+ the confidence penalty's terms) is in range (|p_c (r_c - <p, r>)|
<= max|r| / 2), but r_c - <p, r> (up to 2 max|r|), s (log p + H + 1) and sum p r log p overflowed:
float32 r = [3.4e38, -3.4e38, 1.7e38] on logits [0, 0, 0] gave [9.45e37, -inf, 3.78e37] where the
exact row is [9.45e37, -1.32e38, 3.78e37]. The result is linear in r, so such rows are redone with r
scaled by a power of two; other rows keep their bits.

Reference: the formulas in long double (x86: 64-bit mantissa, exponent range past float64's), so
float64 rows near 1.8e308 stay in range in the reference too.
"""

import numpy as np
import pytest

from optkern.nn.losses import xent_forward, xent_rop

L = np.longdouble
MAX = {np.float32: float(np.finfo(np.float32).max), np.float64: float(np.finfo(np.float64).max)}

pytestmark = pytest.mark.skipif(np.finfo(L).max <= np.finfo(np.float64).max, reason="long double is float64 here")


def ref_rop(logp, r, beta, scale):
    """scale * (d^2 l / dz^2) r in long double, p log p taken as 0 where p = 0."""
    lp, rr = logp.astype(L), r.astype(L)
    p = np.exp(lp)
    live = p > 0
    lp0 = np.where(live, lp, 0)
    H = -(p * lp0).sum(1, keepdims=True)
    s = p * (rr - (p * rr).sum(1, keepdims=True))
    RH = -(s * lp0).sum(1, keepdims=True)
    return L(scale) * (s + L(beta) * np.where(live, s * (lp0 + H + 1) + p * RH, 0))


def big_rows(rng, dtype, N, C):
    """Rows of r whose entries are near the max with mixed signs, a zero row and ordinary rows."""
    m = MAX[dtype]
    r = rng.uniform(-1, 1, (N, C)) * m
    r[0] = m * (-1.0) ** np.arange(C)  # (±max: r_c - <p, r> near ±2 max)
    r[1] = 0.0
    r[2] = rng.standard_normal(C)  # ordinary row
    return r.astype(dtype)


def logits(rng, dtype, N, C, masked=True):
    z = 2.0 * rng.standard_normal((N, C))
    if masked:
        z[3, 1] = -np.inf  # (a masked class: p = 0, log p = -inf)
    return z.astype(dtype)


def check(got, want, r, dtype, scale, beta):
    """got ≈ want to a few ulps of the row's scale (max|r| scale (1 + beta 20): the size of its terms);
    where want is beyond the dtype's range, got is inf of its sign."""
    assert got.dtype == dtype
    with np.errstate(over="ignore"):
        wd = want.astype(dtype)
    out = ~np.isfinite(wd)
    np.testing.assert_array_equal(got[out], wd[out])
    size = np.abs(r.astype(L)).max(1, keepdims=True) * L(abs(scale)) * L(1 + 20 * abs(beta))
    err = (np.abs(got.astype(L) - want) / np.maximum(size, L(1e-300)))[~out]
    assert np.isfinite(got[~out]).all()
    assert float(err.max()) <= 16 * np.finfo(dtype).eps, float(err.max())


@pytest.mark.parametrize("scale", [1.0, 1.0 / 64])
@pytest.mark.parametrize("beta", [0.0, 0.3, 1e-3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rop_with_r_near_the_max(dtype, beta, scale):
    rng = np.random.default_rng(7)
    z = logits(rng, dtype, 9, 6)
    r = big_rows(rng, dtype, 9, 6)
    _, logp, _ = xent_forward(z, np.zeros(9, np.int64), confidence_penalty=beta)
    got = xent_rop(logp, r, confidence_penalty=beta, scale=scale)
    check(got, ref_rop(logp, r, beta, scale), r, dtype, scale, beta)
    assert (got[3, 1] == 0) and np.isfinite(got).all()


@pytest.mark.parametrize("beta", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scale_applies_after_the_range_is_restored(dtype, beta):
    """scale 4. Row 0: r = ±max over two equal classes, exact ±2 max (+ penalty terms): out of range, ±inf.
    Row 1: p = [0.9, 0.1], r = [max, -max]: r_1 - <p, r> = -1.8 max overflowed (-inf), though
    4 p (r - <p, r>) = [0.72, -0.72] max is in range."""
    m = MAX[dtype]
    logp = np.log(np.array([[0.5, 0.5], [0.9, 0.1]])).astype(dtype)
    r = np.array([[m, -m], [m, -m]], dtype)
    got = xent_rop(logp, r, confidence_penalty=beta, scale=4.0)
    want = ref_rop(logp, r, beta, 4.0)
    assert np.all(np.abs(want[0]) > m) and np.all(np.abs(want[1]) < m)
    np.testing.assert_array_equal(got[0], np.array([np.inf, -np.inf], dtype))
    check(got[1:], want[1:], r[1:], dtype, 4.0, beta)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaled_rows_are_the_plain_rows_scaled(dtype):
    """The redone row is 2^k times the R-operator of r 2^-k, bit for bit (scale 1, no penalty):
    powers of two commute with the rounding, so nothing but the range changes. Rows with NaN or inf
    in r are not redone: NaN in, NaN out (an inf gives a non-finite row)."""
    rng = np.random.default_rng(3)
    z = logits(rng, dtype, 9, 6)
    r = big_rows(rng, dtype, 9, 6)
    r[7, 2], r[8, 4] = np.nan, np.inf
    _, logp, _ = xent_forward(z, np.zeros(9, np.int64))
    k = int(np.frexp(MAX[dtype])[1]) - 1
    with np.errstate(over="ignore", invalid="ignore"):
        want = np.ldexp(xent_rop(logp, np.ldexp(r, -k)), k)
    got = xent_rop(logp, r)
    big = np.abs(r[:7]).max(1) >= 2.0**k
    assert big.sum() >= 4
    np.testing.assert_array_equal(got[:7][big], want[:7][big].astype(dtype))
    assert np.isnan(got[7]).all() and not np.isfinite(got[8]).all()
