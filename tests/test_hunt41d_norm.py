"""Hunt 41d: float64 statistics of data far from 0 (the CPU's corrected two-pass).

The CPU kernels took a float64 row's mean as its double sum over n, and "corrected" M2 by the
distance of that mean to itself rounded to the dtype: 0 for float64, so the mean kept the sum's
rounding, some ulps of the data's magnitude. A constant float64 row of 1e20 (1000 values) came out
with rstd 6.1e-5 (its M2 n ulp², not 0) and y = 1 everywhere, not 0; data a few ulps apart were
normalized against a variance off by its own size. (float32 means are exact double sums, and the
GPU's shifted sums are exact for them: only float64 on the CPU.) The fix sums the deviations of the
second pass too, where the sum's rounding can matter beside the spread, and refines the mean with
them (rules::shifted_moments around the first mean).

Not fixed: a row of more than one statistics chunk (2048 values) merges the chunks' means, each
rounded, so data only a few ulps apart still lose their variance there (Chan's merge of rounded means).
"""

from fractions import Fraction

import numpy as np
import pytest

from optkern import norm

EPS = 1e-5
# (n values per row / channel, the constant): past the sum's exact range (1e20 n), and near the
# max, where the sums overflow and the scaled statistics run
CONSTANT = [(1000, 1e20), (9, float(np.finfo(np.float64).max) / 2), (5000, 3.0e15 + 0.5), (2049, -7.77e200)]


def _calls(x):
    """(name, y, mean, rstd) of every normalization whose statistics span the last axis of ``x``
    (N, C, S) per row, or the channel of ``x`` laid out as (S, C) / (N, C, S) for batch norm."""
    n, c, s = x.shape
    out = []
    y, sv = norm.layer_norm(x, (s,), eps=EPS)
    out.append(("layer_norm", y, sv.mean, sv.rstd))
    y, sv = norm.group_norm(x, c, eps=EPS)
    out.append(("group_norm", y, sv.mean, sv.rstd))
    y, sv = norm.instance_norm(x, eps=EPS)
    out.append(("instance_norm", y, sv.mean, sv.rstd))
    y, sv = norm.instance_norm(x, None, None, np.zeros(c), np.ones(c), eps=EPS)
    out.append(("instance_norm running", y, sv.mean, sv.rstd))
    # batch norm: the same values as the channels of (1, C, S) and, S = 1, of (S, C)
    y, sv = norm.batch_norm(x[:1].copy(), eps=EPS)
    out.append(("batch_norm S>1", y, sv.mean, sv.rstd))
    y, sv = norm.batch_norm(np.ascontiguousarray(x[0].T), eps=EPS)
    out.append(("batch_norm S=1", y, sv.mean, sv.rstd))
    return out


@pytest.mark.parametrize("n,value", CONSTANT, ids=lambda v: repr(v))
def test_a_constant_float64_row_normalizes_to_zero(n, value):
    x = np.full((2, 3, n), value)
    for name, y, mean, rstd in _calls(x):
        assert np.all(y == 0), f"{name}: y = {np.unique(y)}"
        assert np.all(mean == value), name
        assert np.allclose(rstd, 1 / np.sqrt(EPS), rtol=1e-15), f"{name}: rstd {np.unique(rstd)}"


def _exact(row):
    """The exact mean and biased variance of ``row`` (each value exact as a Fraction)."""
    v = [Fraction(float(a)) for a in row]
    m = sum(v) / len(v)
    return m, sum((a - m) ** 2 for a in v) / len(v)


@pytest.mark.parametrize("n", [7, 1000, 2048])
def test_float64_data_a_few_ulps_apart_get_their_true_mean_and_variance(n):
    rng = np.random.default_rng(n)
    base = 1.0e20
    ulp = np.spacing(base)
    x = (base + ulp * rng.integers(0, 4, size=(1, 2, n))).astype(np.float64)
    for name, y, mean, rstd in _calls(x):
        for row in range(2):
            vals = x[0, row]
            m, var = _exact(vals)
            got_mean = np.ravel(mean)[row]
            got_rstd = np.ravel(rstd)[row]
            # (within an ulp: each chunk's mean rounded once more by the merge of chunks)
            assert abs(Fraction(float(got_mean)) - m) <= Fraction(float(ulp)), f"{name}: mean {got_mean - base}"
            want = 1 / np.sqrt(float(var) + EPS)
            assert got_rstd == pytest.approx(want, rel=1e-12), f"{name}: rstd {got_rstd} vs {want}"
        # (y: x̂ of each value, within what the mean's own rounding to a float64 leaves: an ulp of the
        # data, times rstd; the mean some ulps off put y that many rstd ulps off)
        y0 = np.asarray(y).reshape(-1)[:n] if name != "batch_norm S=1" else y[:, 0]
        m, var = _exact(x[0, 0])
        r = 1 / np.sqrt(float(var) + EPS)
        want = np.array([float((Fraction(float(a)) - m) * Fraction(r)) for a in x[0, 0]])
        assert np.max(np.abs(y0 - want)) <= ulp * r * (1 + 1e-9) + 1e-12, name


@pytest.mark.parametrize("n", [1000, 5000])
def test_float64_offset_data_get_a_mean_within_an_ulp(n):
    # 1e8 + N(0, 1): batch norm's mean was 4 ulps of 1e8 off at n = 5000 (6e-8), y as much
    x = 1e8 + np.random.default_rng(n).standard_normal(n)
    m, _ = _exact(x)
    ulp = Fraction(float(np.spacing(1e8)))
    _, sv = norm.batch_norm(x.reshape(n, 1), eps=EPS)
    assert abs(Fraction(float(sv.mean[0])) - m) <= ulp
    _, sv = norm.layer_norm(x.reshape(1, n), (n,), eps=EPS)
    assert abs(Fraction(float(sv.mean[0])) - m) <= ulp
