"""Hunt 44c: the GPU's per-thread shifted sums (rules::push_shifted: each thread's first value as its
shift K) where that first value is an outlier of the thread's values. M2 = Σ(x - K)² - n (mean - K)²
then cancels up to a factor n + 1 (n the thread's count), and multiplies Σ(x - K)²'s rounding errors
by it: float64 rows of 8192 (256 threads of 32 values) whose thread 0 began with a value 1e2 or 1e4
from the N(0, 1) rest, at offsets 0, 1e4 and 1e6, had rstd 5-24 ulps off, batch-norm channels of 6000
10-20, against the exact statistics (tests/exact_moments.py; the real
kernels under tools/cuda_emu before the fix). Such a thread now sums its values again
around their mean (rules::reshift_needed, rules/moments.hpp): rows within the CPU's few ulps;
channels within 8, what the CPU's own block merges give these (its two-pass: up to 8.2). Float32
within an ulp of float32. Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it
on the CPU.
"""

import numpy as np
import pytest

from exact_moments import exact_moments, rsqrt_exact, ulps
from gpu import require_gpu
from optkern import norm

cp, _ = require_gpu()

EPS = 1e-5


def _data(shape, off, k, dtype, axis):
    """off + N(0, 1) with the first value along `axis` of every group moved to off + k."""
    x = off + np.random.default_rng(7).standard_normal(shape)
    idx = [slice(None)] * len(shape)
    idx[axis] = 0
    x[tuple(idx)] = off + k
    return x.astype(dtype)


def _rstd_ulps(vals, rstd, dtype):
    """rstd's distance from the exact one, in ulps of dtype."""
    _, v, _ = exact_moments(np.asarray(vals, np.float64))
    ex = rsqrt_exact(v, EPS)
    if dtype == np.float64:
        return ulps(rstd, ex)
    return abs(float(rstd) - float(ex)) / float(np.spacing(np.float32(float(ex))))


CASES = [(off, k) for off in (0.0, 1e4, 1e6) for k in (1e2, 1e4)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("off", "k"), CASES)
def test_layer_norm_outlier_shift(dtype, off, k):
    x = _data((2, 8192), off, k, dtype, axis=1)  # 256 threads a row: 32 values each
    _, sv = norm.layer_norm(cp.asarray(x), 8192, eps=EPS)
    rstd = cp.asnumpy(sv.rstd)
    bound = 4.0 if dtype == np.float64 else 1.0
    for r in range(2):
        assert _rstd_ulps(x[r], rstd[r], dtype) <= bound, (r, _rstd_ulps(x[r], rstd[r], dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("off", "k"), CASES)
def test_batch_norm_outlier_shift(dtype, off, k):
    x = _data((6000, 2), off, k, dtype, axis=0)
    rm, rv = cp.zeros(2, dtype), cp.ones(2, dtype)
    _, sv = norm.batch_norm(cp.asarray(x), running_mean=rm, running_var=rv, momentum=1.0, eps=EPS)
    rstd, var = cp.asnumpy(sv.rstd), cp.asnumpy(rv)
    bound = 8.0 if dtype == np.float64 else 1.0  # (the CPU's Chan merges of its blocks: up to 8.2 here)
    for c in range(2):
        assert _rstd_ulps(x[:, c], rstd[c], dtype) <= bound, (c, _rstd_ulps(x[:, c], rstd[c], dtype))
        _, _, u = exact_moments(x[:, c].astype(np.float64))
        if dtype == np.float64:
            assert ulps(var[c], u) <= 8.0, (c, ulps(var[c], u))
        else:
            assert abs(float(var[c]) - float(u)) <= float(np.spacing(np.float32(float(u)))), c
