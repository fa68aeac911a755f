"""Norms and variances at the edges of the floating-point range (issue 20).

Every norm kernel sums squares directly and, when that sum overflowed, underflowed below a tiny eps
or met a non-finite value, sums the row again scaled by a power of two (rules/norm.hpp). References
here are float64 (float32 input) or scaled exact sums (math.fsum of (x / 2^e)^2, float64 input).
Non-finite input: a row or channel holding NaN or +-inf gets NaN statistics and an all-NaN output;
weight_norm (a parameter, checked on the host) raises ValueError for NaN and inf alike.
"""

import math

import numpy as np
import pytest

from optkern import norm

RANGES = {np.float32: (1e-40, 1e30), np.float64: (1e-300, 1e300)}
RTOL = {np.float32: 2e-6, np.float64: 1e-14}
# Outputs below the normal range carry an absolute, not a relative, rounding error.
TINY = {np.float32: float(np.finfo(np.float32).tiny), np.float64: float(np.finfo(np.float64).tiny)}
SIZES = [1, 2, 7, 1023, 3001]


def _wide(n, dtype, seed, lo=None, hi=None):
    """n values of random sign, log-uniform in [lo, hi] (the dtype's test range by default)."""
    a, b = RANGES[dtype]
    lo, hi = lo or a, hi or b
    rng = np.random.default_rng(seed)
    mag = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    return (mag * rng.choice([-1.0, 1.0], n)).astype(dtype)


def _ref_sumsq(v):
    """Σ v² as (ssq, e) with Σ v² = ssq 4^e, from exactly scaled float64 values and an exact sum."""
    v = np.asarray(v, dtype=np.float64)
    amax = float(np.max(np.abs(v)))
    if amax == 0.0:
        return 0.0, 0
    e = math.frexp(amax)[1]
    s = np.ldexp(v, -e)
    return math.fsum(s * s), e


def _ref_norm(v):
    ssq, e = _ref_sumsq(v)
    return math.ldexp(math.sqrt(ssq), e)


def _ref_rstd(var, e, eps):
    """1 / sqrt(var 4^e + eps) without overflow."""
    if 2 * e < 1000:
        return 1.0 / math.sqrt(math.ldexp(var, 2 * e) + eps)
    return math.ldexp(1.0 / math.sqrt(var), -e)  # var 4^e > 1e300: eps is negligible


def _ref_moments(v):
    """(mean, var, e): mean of v, biased variance = var 4^e (scaled two-pass with exact sums)."""
    v = np.asarray(v, dtype=np.float64)
    e = math.frexp(float(np.max(np.abs(v))))[1]
    s = np.ldexp(v, -e)
    m = math.fsum(s) / s.size
    d = s - m
    return math.ldexp(m, e), math.fsum(d * d) / s.size, e


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_weight_norm_of_wide_vectors(dtype, n):
    v = _wide(3 * n, dtype, seed=n).reshape(3, n)
    w, saved = norm.weight_norm(v, np.ones(3, dtype))
    for r in range(3):
        ref = _ref_norm(v[r])
        assert saved.norm[r] == pytest.approx(ref, rel=RTOL[dtype])
        expect = v[r].astype(np.float64) / ref
        np.testing.assert_allclose(w[r], expect, rtol=RTOL[dtype] * 4, atol=TINY[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_rms_norm_of_wide_rows(dtype, n):
    x = _wide(2 * n, dtype, seed=100 + n).reshape(2, n)
    eps = 1e-6
    y, saved = norm.rms_norm(x, n, eps=eps)
    for r in range(2):
        ssq, e = _ref_sumsq(x[r])
        ms = math.ldexp(ssq / n, 2 * e) if 2 * e < 1000 else math.inf  # mean square (inf: eps negligible)
        inv = 1.0 / math.sqrt(ms + eps) if math.isfinite(ms) else math.ldexp(1.0 / math.sqrt(ssq / n), -e)
        assert saved.inv_rms[r] == pytest.approx(inv, rel=RTOL[dtype] * 4)
        np.testing.assert_allclose(y[r], x[r].astype(np.float64) * inv, rtol=RTOL[dtype] * 8, atol=TINY[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2, 7, 1023, 3001])
@pytest.mark.parametrize("scale", ["large", "mixed"])
def test_layer_norm_of_wide_rows(dtype, n, scale):
    lo, hi = RANGES[dtype]
    if scale == "large":  # all entries near the top of the range: squares overflow
        x = _wide(2 * n, dtype, seed=n, lo=hi / 100, hi=hi).reshape(2, n)
    else:
        x = _wide(2 * n, dtype, seed=n).reshape(2, n)
    y, saved = norm.layer_norm(x, n, eps=1e-5)
    for r in range(2):
        mean, var, e = _ref_moments(x[r])
        rstd = _ref_rstd(var, e, 1e-5)
        assert saved.mean[r] == pytest.approx(mean, rel=RTOL[dtype] * 4, abs=math.ldexp(RTOL[dtype], e))
        assert saved.rstd[r] == pytest.approx(rstd, rel=RTOL[dtype] * 4)
        ref = (x[r].astype(np.float64) - mean) * rstd
        np.testing.assert_allclose(y[r], ref, rtol=RTOL[dtype] * 16, atol=RTOL[dtype] * 16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 3), (64, 2, 7), (3000, 2)])
def test_batch_norm_of_huge_values(dtype, shape):
    hi = RANGES[dtype][1]
    x = _wide(int(np.prod(shape)), dtype, seed=sum(shape), lo=hi / 100, hi=hi).reshape(shape)
    y, saved = norm.batch_norm(x, eps=1e-5)
    for c in range(shape[1]):
        xc = np.moveaxis(x, 1, 0)[c].ravel()
        mean, var, e = _ref_moments(xc)
        rstd = _ref_rstd(var, e, 1e-5)
        assert saved.rstd[c] == pytest.approx(rstd, rel=RTOL[dtype] * 4)
        ref = (xc.astype(np.float64) - mean) * rstd
        np.testing.assert_allclose(np.moveaxis(y, 1, 0)[c].ravel(), ref, rtol=RTOL[dtype] * 16, atol=RTOL[dtype] * 16)


# ---- the issue's reproducers ------------------------------------------------------------------


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e19), (np.float64, 1e154), (np.float64, 1e300)])
def test_issue_reproducers(dtype, big):
    v = np.array([[3 * big, 4 * big]], dtype)
    w, s = norm.weight_norm(v, np.ones(1, dtype))
    np.testing.assert_allclose(w, [[0.6, 0.8]], rtol=RTOL[dtype] * 4)
    assert s.norm[0] == pytest.approx(5 * big, rel=RTOL[dtype] * 4)
    y, _ = norm.rms_norm(v, 2)
    np.testing.assert_allclose(y, [[3 / math.sqrt(12.5), 4 / math.sqrt(12.5)]], rtol=RTOL[dtype] * 4)
    y, _ = norm.layer_norm(np.array([[-3 * big, 3 * big]], dtype), 2)
    np.testing.assert_allclose(y, [[-1.0, 1.0]], rtol=RTOL[dtype] * 4)
    y, _ = norm.group_norm(np.array([[[-3 * big], [3 * big]]], dtype), 1)
    np.testing.assert_allclose(y.ravel(), [-1.0, 1.0], rtol=RTOL[dtype] * 4)


@pytest.mark.parametrize("dtype, tiny", [(np.float32, 1e-20), (np.float64, 1e-155)])
def test_tiny_rows_with_a_tiny_eps(dtype, tiny):
    """Squares underflow; with an eps far below them the statistics must still be the rows' own.

    (float32: eps=1.4e-45, the smallest float32 > 0, is 1e-6 of the mean square here; an eps that
    rounds to 0 in float32 is refused (issue 13: a constant row gave NaN); float64: eps=5e-324 is
    4e-15 of the mean square here.)
    """
    x = np.array([[3 * tiny, 4 * tiny]], dtype)
    eps = float(np.finfo(np.float32).smallest_subnormal) if dtype == np.float32 else 5e-324
    y, s = norm.rms_norm(x, 2, eps=eps)
    np.testing.assert_allclose(y, [[3 / math.sqrt(12.5), 4 / math.sqrt(12.5)]], rtol=RTOL[dtype] * 8)
    y, _ = norm.layer_norm(np.array([[-3 * tiny, 3 * tiny]], dtype), 2, eps=eps)
    np.testing.assert_allclose(y, [[-1.0, 1.0]], rtol=RTOL[dtype] * 8)
    w, s = norm.weight_norm(x, np.ones(1, dtype))
    np.testing.assert_allclose(w, [[0.6, 0.8]], rtol=RTOL[dtype] * 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormal_weight_norm(dtype):
    sub = np.finfo(dtype).smallest_subnormal
    v = np.array([[3 * sub * 2**10, 4 * sub * 2**10]], dtype)
    w, s = norm.weight_norm(v, np.full(1, 2.0, dtype))
    np.testing.assert_allclose(w, [[1.2, 1.6]], rtol=RTOL[dtype] * 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_and_constant_rows(dtype):
    x = np.array([[0.0, 0.0, 0.0], [2.5, 2.5, 2.5]], dtype)
    y, s = norm.layer_norm(x, 3, eps=1e-5)
    assert np.array_equal(y, np.zeros_like(x)) and np.array_equal(s.mean, [0.0, 2.5])
    np.testing.assert_allclose(s.rstd, 1 / math.sqrt(1e-5), rtol=RTOL[dtype])
    y, s = norm.rms_norm(x[:1], 3, eps=1e-5)
    assert np.array_equal(y, np.zeros((1, 3))) and s.inv_rms[0] == pytest.approx(1 / math.sqrt(1e-5), rel=1e-6)
    with pytest.raises(ValueError, match="^v: slice 0 along dim has norm 0"):
        norm.weight_norm(x, np.ones(2, dtype))


# ---- non-finite input: one treatment everywhere -----------------------------------------------


def _row_calls(dtype):
    return {
        "layer_norm": lambda x: norm.layer_norm(x, x.shape[1])[0],
        "rms_norm": lambda x: norm.rms_norm(x, x.shape[1])[0],
        "group_norm": lambda x: norm.group_norm(x[:, :, None], 1)[0][:, :, 0],
        "instance_norm": lambda x: norm.instance_norm(x[:, None, :])[0][:, 0, :],
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("fn", ["layer_norm", "rms_norm", "group_norm", "instance_norm"])
def test_a_non_finite_row_is_all_nan_and_alone(dtype, bad, fn):
    x = np.random.default_rng(0).standard_normal((3, 9)).astype(dtype)
    x[1, 4] = bad
    y = _row_calls(dtype)[fn](x)
    assert np.isnan(y[1]).all()
    assert np.isfinite(y[[0, 2]]).all()
    clean = x[[0, 2]]
    assert np.array_equal(y[[0, 2]], _row_calls(dtype)[fn](clean))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_channel_is_all_nan_and_alone(dtype, bad):
    x = np.random.default_rng(1).standard_normal((6, 3)).astype(dtype)
    x[2, 1] = bad
    rm, rv = np.zeros(3, dtype), np.ones(3, dtype)
    y, s = norm.batch_norm(x, running_mean=rm, running_var=rv)
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all()
    assert np.isnan(s.mean[1]) and np.isnan(s.rstd[1]) and np.isnan(rm[1]) and np.isnan(rv[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_weight_norm_raises_for_nan_and_inf_alike(dtype, bad):
    v = np.ones((2, 4), dtype)
    v[1, 2] = bad
    with pytest.raises(ValueError, match=r"^v: slice 1 along dim has norm nan; .* finite nonzero norm"):
        norm.weight_norm(v, np.ones(2, dtype))


# ---- batch norm running variance from the shifted statistics -----------------------------------


@pytest.mark.parametrize("shape", [(64, 3), (5000, 2), (16, 2, 300), (3, 4, 1000)])
def test_batch_norm_running_var_when_spread_is_one_rounding_step(shape):
    """float32 data near 1e4 with std 1e-3 (about one float32 step at 1e4): the running variance and
    rstd match a float64 evaluation of the same float32 data (they were up to 24% off)."""
    rng = np.random.default_rng(sum(shape))
    x = (1e4 + 1e-3 * rng.standard_normal(shape)).astype(np.float32)
    C = shape[1]
    rm, rv = np.zeros(C, np.float32), np.zeros(C, np.float32)
    _, s = norm.batch_norm(x, running_mean=rm, running_var=rv, momentum=1.0, eps=1e-5)
    axes = (0, *range(2, x.ndim))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(rv, x64.var(axis=axes, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(rm, x64.mean(axis=axes), rtol=1e-7)
    np.testing.assert_allclose(s.rstd, 1 / np.sqrt(x64.var(axis=axes) + 1e-5), rtol=5e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_running_var_matches_the_unbiased_variance(dtype):
    x = np.random.default_rng(5).standard_normal((37, 4, 3)).astype(dtype)
    rm, rv = np.zeros(4, dtype), np.ones(4, dtype)
    norm.batch_norm(x, running_mean=rm, running_var=rv, momentum=0.25)
    ref = 0.75 + 0.25 * x.astype(np.float64).var(axis=(0, 2), ddof=1)
    np.testing.assert_allclose(rv, ref, rtol=RTOL[dtype] * 4)


def _wn_backward_exact(v, g, dw):
    """(dv, dg) of one row of weight_norm from exact rational sums: with s = Σ dw v and n = ‖v‖,
    dg = s / n and dv = (g / n)(dw - s v / n²), each value rounded once to float64 before the division
    by n (which is in float64's normal range for every case here)."""
    from fractions import Fraction as Fr

    vv, dd = [Fr(float(a)) for a in v], [Fr(float(a)) for a in dw]
    n2, s = sum(a * a for a in vv), sum(a * b for a, b in zip(vv, dd))
    k = (n2.denominator.bit_length() - n2.numerator.bit_length()) // 2  # n2 4^k is near 1
    n = math.ldexp(math.sqrt(n2 * 4**k), -k)
    dv = [float(Fr(float(g)) * (d - s * a / n2)) / n for a, d in zip(vv, dd)]
    return np.array(dv), float(s) / n


# (v row, g, dw row): k = s / ‖v‖ / ‖v‖ overflowed (to inf, or the dv of the wrong sign) in the first three
WN_BACKWARD_CASES = [
    (np.float32, [1e-40, 2e-40], 1e-30, [1.0, 1.0]),  # subnormal ‖v‖, tiny g
    (np.float32, [1e-9, 2e-9], 1e-5, [1e30, 1e30]),  # normal range, a large dw
    (np.float64, [1e-160, 2e-160], 1e-150, [1e160, 1e160]),
    (np.float32, [1e-40, 2e-40], 1e-2, [1.0, -3.0]),  # dv near float32's max
    (np.float32, [3.0, -4.0, 1.0], 0.5, [0.25, 2.0, -1.0]),  # ordinary: the fast path
    (np.float64, [3.0, -4.0, 1.0], 0.5, [0.25, 2.0, -1.0]),
]


@pytest.mark.parametrize("dtype,v,g,dw", WN_BACKWARD_CASES)
def test_weight_norm_backward_where_s_over_norm_squared_overflows(dtype, v, g, dw):
    """dv = (g / ‖v‖)(dw - (s / ‖v‖)(v / ‖v‖)) is finite where s / ‖v‖² is not (a subnormal ‖v‖ or a
    large dw): it was -inf for both elements (exact: one positive, one negative); torch in float32 too
    gives NaN / -inf here (its float64 gives the exact values of the float32 cases)."""
    v2, g1, dw2 = np.array([v], dtype), np.array([g], dtype), np.array([dw], dtype)
    w, saved = norm.weight_norm(v2, g1)
    dg, dv = norm.weight_norm_backward(dw2, v2, g1, saved)
    want_dv, want_dg = _wn_backward_exact(v2[0], g1[0], dw2[0])
    assert np.isfinite(want_dv).all() and np.isfinite(dv).all()
    # a subnormal ‖v‖ (2.2e-40) is saved in float32 with about 17 bits (6e-6 relative), times dv's cancellation
    rtol = 5e-5 if saved.norm[0] < np.finfo(dtype).tiny else RTOL[dtype] * 8
    np.testing.assert_allclose(dv[0], want_dv, rtol=rtol)
    np.testing.assert_allclose(dg, [want_dg], rtol=rtol)
    assert (np.sign(dv[0]) == np.sign(want_dv)).all()
