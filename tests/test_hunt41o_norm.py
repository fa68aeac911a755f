"""Hunt 41o: float64 statistics of long rows a few ulps apart (the merge of statistics chunks).

Hunt 41d refined a float64 chunk's mean with its deviations from the first mean, but a row longer
than one statistics chunk (2048 values; batch norm: a block of 16K values of a channel) merged the
chunks' moments by Chan's formula, each chunk's mean rounded to a float64 first: for data of 1e20 +
{0..3} ulps the rounded means differ by whole ulps where the true ones differ by fractions, and the
merge's n_a n_b / n (Δmean)² term, of the size of M2 itself, was that wrong (rstd ~8% off at n = 3001).
The fix sums such a row's deviations again around the merged mean (norm_cpu.hpp, remerged_moments).
Checked against the exact statistics (fractions.Fraction), forward and backward.
"""

from fractions import Fraction

import numpy as np
import pytest

from optkern import norm

EPS = 1e-5
BASE = 1.0e20
ULP = float(np.spacing(BASE))


def _data(shape, seed):
    rng = np.random.default_rng(seed)
    return (BASE + ULP * rng.integers(0, 4, size=shape)).astype(np.float64)


def _exact(vals):
    """The exact mean and the rstd from the exact biased variance of ``vals``."""
    v = [Fraction(float(a)) for a in np.ravel(vals)]
    m = sum(v) / len(v)
    var = sum((a - m) ** 2 for a in v) / len(v)
    return m, 1 / np.sqrt(float(var) + EPS)


def _row_calls(x):
    """(name, y, saved, backward, groups of x's flat indices) of the row normalizations of x (N, C, S):
    every (n, c) row of S values is one row of statistics."""
    n, c, s = x.shape
    rows = np.arange(x.size).reshape(n * c, s)
    y, sv = norm.layer_norm(x.reshape(n * c, s), (s,), eps=EPS)
    yield (
        "layer_norm",
        y,
        sv,
        lambda dy: norm.layer_norm_backward(dy.reshape(n * c, s), x.reshape(n * c, s), None, sv),
        rows,
    )
    y, sv = norm.group_norm(x, c, eps=EPS)
    yield "group_norm", y, sv, lambda dy: norm.group_norm_backward(dy, x, None, sv), rows
    y, sv = norm.instance_norm(x, eps=EPS)
    yield "instance_norm", y, sv, lambda dy: norm.instance_norm_backward(dy, x, None, sv), rows


def _batch_calls(x):
    """The same for batch norm of x (N, C, S): channel c's statistics over its N * S values."""
    n, c, s = x.shape
    chans = np.arange(x.size).reshape(n, c, s).transpose(1, 0, 2).reshape(c, n * s)
    y, sv = norm.batch_norm(x, eps=EPS)
    yield "batch_norm", y, sv, lambda dy: norm.batch_norm_backward(dy, x, None, sv), chans


def _check(name, x, y, sv, backward, groups):
    flat = np.ravel(x)
    dy = np.random.default_rng(7).standard_normal(x.shape)
    dx, dw, _ = backward(dy)
    dx, y, dyf = np.ravel(np.asarray(dx)), np.ravel(np.asarray(y)), np.ravel(dy)
    for g, idx in enumerate(groups):
        m, r = _exact(flat[idx])
        got_mean, got_rstd = float(np.ravel(sv.mean)[g]), float(np.ravel(sv.rstd)[g])
        assert abs(Fraction(got_mean) - m) <= Fraction(ULP), f"{name} {g}: mean {got_mean - BASE}"
        assert got_rstd == pytest.approx(r, rel=1e-12, abs=0), f"{name} {g}: rstd {got_rstd} vs {r}"
        # y, dx against the exact x̂ around the exact mean: every norm subtracts the mean's low part
        # too (rules::mean_lo: the row norms since hunt 46a, batch norm's channels since hunt 47k)
        xh = np.array([float((Fraction(float(a)) - m) * Fraction(r)) for a in flat[idx]])
        assert np.max(np.abs(y[idx] - xh)) <= 1e-9 * np.max(np.abs(xh)) + 1e-12, f"{name} {g}: y"
        d = dyf[idx]
        want = r * (d - d.mean() - xh * np.mean(d * xh))
        assert np.max(np.abs(dx[idx] - want)) <= 1e-9 * np.max(np.abs(want)), f"{name} {g}: dx"
    if name == "batch_norm":  # (per channel: the row norms' dweight mixes rows)
        for g, idx in enumerate(groups):
            m, r = _exact(flat[idx])  # (around the exact mean, as y and dx)
            xh = np.array([float((Fraction(float(a)) - m) * Fraction(r)) for a in flat[idx]])
            want = float(np.sum(dyf[idx] * xh))
            assert float(np.ravel(dw)[g]) == pytest.approx(want, rel=1e-9, abs=1e-9 * len(idx)), f"{name} {g}: dweight"


@pytest.mark.parametrize("n", [2049, 3001, 10007])
def test_long_float64_rows_a_few_ulps_apart_get_their_exact_statistics(n):
    x = _data((1, 2, n), n)
    for call in _row_calls(x):
        _check(*call[:1], x, *call[1:])


# (N, C, S): per channel N * S values past one block of the channel kernel (16K values: S = 1 with
# C = 2 has blocks of 8192 rows), and within one block past a row chunk's 2048
@pytest.mark.parametrize("shape", [(10007, 2, 1), (9, 2, 2003), (3001, 2, 1), (1, 2, 3001), (20011, 1, 1)], ids=str)
def test_batch_norm_of_long_float64_channels_a_few_ulps_apart(shape):
    x = _data(shape, sum(shape))
    for call in _batch_calls(x):
        _check(*call[:1], x, *call[1:])
