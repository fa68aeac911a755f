"""CUDA twin of test_hunt43b_norm_offset.py (hunt 43b): float64 statistics of data far from 0 (1e4 to
1e8 + N(0, 1)) within a few ulps of the exact ones.

The GPU merges its threads' moments (shifted sums around each thread's first value) in a tree and
batch norm's splits in order, by Chan's formula, whose n_a n_b / n Δmean² term is first order in
Δmean's error: each merged mean rounded to a float64 took about ulp(mean) Δmean into M2 at every
merge. The means now carry their low part (rules::Moments::lo, rules/moments.hpp, shared with the
CPU; the warp shuffles move it too, cuda/norm_reduce.cuh).
Checked against the exact statistics (tests/exact_moments.py). Skipped without CuPy / the CUDA module
/ a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from exact_moments import exact_moments, rsqrt_exact, ulps
from gpu import require_gpu
from optkern import norm

cp, _ = require_gpu()

EPS = 1e-5


def _check(groups, mean, rstd, var=None):
    mean, rstd = np.ravel(cp.asnumpy(mean)), np.ravel(cp.asnumpy(rstd))
    for g in range(groups.shape[0]):
        m, v, u = exact_moments(groups[g])
        assert ulps(mean[g], m) <= 1.0, (g, ulps(mean[g], m))
        assert ulps(rstd[g], rsqrt_exact(v, EPS)) <= 4.0, (g, ulps(rstd[g], rsqrt_exact(v, EPS)))
        if var is not None:
            assert ulps(cp.asnumpy(var)[g], u) <= 4.0, (g, ulps(cp.asnumpy(var)[g], u))


@pytest.mark.parametrize("off", [1e4, 1e6, 1e8])
def test_batch_norm_far_from_zero(off):
    rng = np.random.default_rng(1)
    x = off + rng.standard_normal((12000, 2))  # (47 splits of 256 rows)
    rm, rv = cp.zeros(2), cp.ones(2)
    _, sv = norm.batch_norm(cp.asarray(x), running_mean=rm, running_var=rv, momentum=1.0, eps=EPS)
    _check(x.T, sv.mean, sv.rstd, var=rv)
    x = off + rng.standard_normal((40, 2, 300))
    _, sv = norm.batch_norm(cp.asarray(x), eps=EPS)
    _check(np.moveaxis(x, 1, 0).reshape(2, -1), sv.mean, sv.rstd)


@pytest.mark.parametrize("off", [1e4, 1e6, -1e8])
def test_row_norms_far_from_zero(off):
    x = off + np.random.default_rng(2).standard_normal((2, 2, 6000))
    g = cp.asarray(x)
    _, sv = norm.layer_norm(g, (2, 6000), eps=EPS)
    _check(x.reshape(2, -1), sv.mean, sv.rstd)
    _, sv = norm.group_norm(g, 2, eps=EPS)
    _check(x.reshape(4, -1), sv.mean, sv.rstd)
