"""float64 normalization statistics of data far from 0 (hunt 43b).

The statistics are merged from parts (batch norm's blocks of 16K / C rows, the 2048-value chunks of a
row) by Chan's formula, whose n_a n_b / n Δmean² term is first order in the error of Δmean. Each
part's mean was rounded to a float64 first (for the CPU's float64 data, m = Σx / n with Σx a rounded
double sum: tens of ulps of the mean off, serial over a batch-norm block), so every merge took ~ulp(mean)
errors, times Δmean ~ σ / sqrt(part), into M2: 1e6 + N(0, 1) had rstd 2e4 ulps off in batch norm on
(60000, 4), 2.5e3-5.5e3 in layer / group / instance norm rows of 30K-100K values. Now each part's
mean comes with its deviations' sum (in the q pass) and the merged means carry their low part
(rules::Moments::lo, rules/moments.hpp, shared with the GPU): within a few ulps.
Checked against the exact statistics (tests/exact_moments.py: integer sums).
"""

import numpy as np
import pytest

from exact_moments import exact_moments, rsqrt_exact, ulps
from optkern.norm import functional as F

EPS = 1e-5


def _data(shape, off, seed):
    return off + np.random.default_rng(seed).standard_normal(shape)


def _check(groups, mean, rstd, tol_mean=1.0, tol_rstd=4.0, var=None):
    for g in range(groups.shape[0]):
        m, v, u = exact_moments(groups[g])
        assert ulps(mean[g], m) <= tol_mean, (g, ulps(mean[g], m))
        assert ulps(rstd[g], rsqrt_exact(v, EPS)) <= tol_rstd, (g, ulps(rstd[g], rsqrt_exact(v, EPS)))
        if var is not None:
            assert ulps(var[g], u) <= tol_rstd, (g, ulps(var[g], u))


@pytest.mark.parametrize("off", [1e4, 1e6, 1e8])
def test_batch_norm_nc_far_from_zero(off):
    # (60000, 4): 15 blocks of 4096 rows; the running variance (momentum 1: the batch's unbiased one)
    x = _data((60000, 4), off, 1)
    rm, rv = np.zeros(4), np.ones(4)
    y, saved = F.batch_norm(x, running_mean=rm, running_var=rv, momentum=1.0, eps=EPS)
    _check(x.T, saved.mean, saved.rstd, var=rv)
    np.testing.assert_array_equal(rm, saved.mean)


@pytest.mark.parametrize("off", [1e4, 1e6, 1e8])
def test_batch_norm_ncs_far_from_zero(off):
    x = _data((400, 3, 700), off, 2)
    _, saved = F.batch_norm(x, eps=EPS)
    _check(np.moveaxis(x, 1, 0).reshape(3, -1), saved.mean, saved.rstd)


@pytest.mark.parametrize("off", [1e4, 1e6, -1e8])
def test_row_norms_far_from_zero(off):
    x = _data((2, 4, 30000), off, 3)
    _, s = F.layer_norm(x, (4, 30000), eps=EPS)
    _check(x.reshape(2, -1), s.mean.ravel(), s.rstd.ravel())
    _, s = F.group_norm(x, 2, eps=EPS)
    _check(x.reshape(4, -1), s.mean.ravel(), s.rstd.ravel())
    _, s = F.instance_norm(x, eps=EPS)
    _check(x.reshape(8, -1), s.mean.ravel(), s.rstd.ravel())


def test_y_and_dx_follow_the_statistics():
    # y = (x - mean) rstd with the returned statistics: its error is that of the mean (half an ulp
    # of 1e6 times rstd at best) -- checked here against the exact mean and rstd, as a bound
    x = _data((60000, 2), 1e6, 4)
    y, saved = F.batch_norm(x, eps=EPS)
    dy = np.random.default_rng(5).standard_normal(x.shape)
    dx, dw, db = F.batch_norm_backward(dy, x, None, saved)
    for c in range(2):
        m, v, _ = exact_moments(x[:, c])
        r = float(rsqrt_exact(v, EPS))
        xh = (x[:, c] - float(m)) * r  # (x - m exact in float64 here: Sterbenz)
        assert np.max(np.abs(y[:, c] - xh)) <= 1.5 * np.spacing(1e6) * r
        mg, mgx = dy[:, c].mean(), (dy[:, c] * xh).mean()
        ref = r * (dy[:, c] - mg - xh * mgx)
        assert np.max(np.abs(dx[:, c] - ref)) <= 1e-9 * np.max(np.abs(ref))
