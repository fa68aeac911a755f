"""CUDA twin of test_hunt41d_norm.py / test_hunt41o_norm.py (hunt 42a): the GPU's float64 statistics
of data a few ulps apart.

Each GPU thread keeps shifted sums around its first value (exact for such data), but the block's tree
(cuda/norm_reduce.cuh) and batch norm's merge of the splits (cuda/norm_channels.cuh) merged the
threads' moments by Chan's formula, each mean rounded to a float64 first: for 1e20 + {0..3} ulps the
rounded means differ by whole ulps where the true ones differ by fractions, and the merge's
n_a n_b / n (Δmean)² term, of M2's own size, was that wrong (rstd 4-15 % off under the emulator; the
CPU's chunk merge had the same defect, fixed in hunt 41o). The scaled statistics of data near the max
(cuda/norm_scaled.cuh: 7.77e200 + a few ulps, whose squared deviations overflow) kept their mean's
sum rounding as the CPU's did before hunt 41d (rstd 10-24 % off). Both now sum the deviations again
around the merged mean where that rounding can matter (rules::remerge_needed and refine_mean, shared
with cpp/norm_cpu.hpp).
Checked against the exact statistics (fractions.Fraction), forward and backward. RMS norm has no
mean (its Σx² in double was right before too): checked alike, as the row kernel's other branch.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import functools
import math
from fractions import Fraction

import numpy as np
import pytest

from gpu import require_gpu
from optkern import norm

cp, _ = require_gpu()

EPS = 1e-5
# (the offset): 1e20 takes the plain statistics; -7.77e200's deviations square past float64's max,
# so its statistics are the scaled ones
BASES = [1.0e20, -7.77e200]


def _data(shape, base, seed):
    rng = np.random.default_rng(seed)
    return (base + np.spacing(abs(base)) * rng.integers(0, 4, size=shape)).astype(np.float64)


def _exact(vals):
    """The exact mean and the rstd from the exact biased variance of ``vals`` (scaled by 4^-j so
    that a variance past float64's max converts)."""
    return _exact_of(np.ascontiguousarray(vals, dtype=np.float64).tobytes())


@functools.cache  # (the same rows are checked for several norms)
def _exact_of(data):
    v = [Fraction(float(a)) for a in np.frombuffer(data)]
    m = sum(v) / len(v)
    var = sum((a - m) ** 2 for a in v) / len(v)
    j = max(0, (var.numerator.bit_length() - var.denominator.bit_length()) // 2)
    return m, math.ldexp(1 / math.sqrt(float(var / 4**j) + math.ldexp(EPS, -2 * j)), -j)


def _check(name, x, y, mean, rstd, dx, groups, dw=None):
    """mean within an ulp of the exact one, rstd to 1e-12, y and dx against the exact x̂ (around the
    exact mean for the row kernels, the mean as returned for batch norm's) for each group of x's
    flat indices; dweight = Σ dy x̂ per group when given."""
    flat, dyf = np.ravel(x), np.ravel(_dy(x.shape))
    y, dx = np.ravel(cp.asnumpy(y)), np.ravel(cp.asnumpy(dx))
    mean, rstd = np.ravel(cp.asnumpy(mean)), np.ravel(cp.asnumpy(rstd))
    for g, idx in enumerate(groups):
        m, r = _exact(flat[idx])
        ulp = Fraction(float(np.spacing(abs(flat[idx[0]]))))
        assert abs(Fraction(float(mean[g])) - m) <= ulp, f"{name} {g}: mean {float(Fraction(float(mean[g])) - m)}"
        assert float(rstd[g]) == pytest.approx(r, rel=1e-12, abs=0), f"{name} {g}: rstd {rstd[g]} vs {r}"
        # every kernel's x̂ around the exact mean (the mean's low part, rules::mean_lo: the row kernels since
        # hunt 46a, instance norm's y with running buffers too; batch norm's channels since hunt 47k)
        xh = np.array([float((Fraction(float(a)) - m) * Fraction(r)) for a in flat[idx]])
        assert np.max(np.abs(y[idx] - xh)) <= 1e-9 * np.max(np.abs(xh)) + 1e-12, f"{name} {g}: y"
        d = dyf[idx]
        want = r * (d - d.mean() - xh * np.mean(d * xh))
        assert np.max(np.abs(dx[idx] - want)) <= 1e-9 * np.max(np.abs(want)), f"{name} {g}: dx"
        if dw is not None:
            got = float(np.ravel(cp.asnumpy(dw))[g])
            assert got == pytest.approx(float(np.sum(d * xh)), rel=1e-9, abs=1e-9 * len(idx)), f"{name} {g}: dw"


def _check_running_var(name, x, groups, rv):
    """rv = 0.9 + 0.1 var (momentum 0.1 from ones) with var each group's exact unbiased variance, where
    that is below float64's max (else inf)."""
    flat, rv = np.ravel(x), np.ravel(cp.asnumpy(rv))
    for g, idx in enumerate(groups):
        v = [Fraction(float(a)) for a in flat[idx]]
        m = sum(v) / len(v)
        var = sum((a - m) ** 2 for a in v) / (len(v) - 1)
        if var < Fraction(float(np.finfo(np.float64).max)):
            assert float(rv[g]) == pytest.approx(float(Fraction(9, 10) + var / 10), rel=1e-12), f"{name} {g}: var"
        else:
            assert rv[g] == np.inf, f"{name} {g}: var {rv[g]}"


def _dy(shape):
    return np.random.default_rng(7).standard_normal(shape)


@pytest.mark.parametrize("base", BASES, ids=repr)
@pytest.mark.parametrize("n", [7, 1000, 3001])
def test_float64_rows_a_few_ulps_apart_get_their_exact_statistics(n, base):
    x = _data((1, 2, n), base, n)
    g, dy = cp.asarray(x), cp.asarray(_dy(x.shape))
    rows = np.arange(x.size).reshape(2, n)
    y, sv = norm.layer_norm(g.reshape(2, n), (n,), eps=EPS)
    dx, _, _ = norm.layer_norm_backward(dy.reshape(2, n), g.reshape(2, n), None, sv)
    _check("layer_norm", x, y, sv.mean, sv.rstd, dx, rows)
    y, sv = norm.group_norm(g, 2, eps=EPS)
    dx, _, _ = norm.group_norm_backward(dy, g, None, sv)
    _check("group_norm", x, y, sv.mean, sv.rstd, dx, rows)
    y, sv = norm.instance_norm(g, eps=EPS)
    dx, _, _ = norm.instance_norm_backward(dy, g, None, sv)
    _check("instance_norm", x, y, sv.mean, sv.rstd, dx, rows)
    # with running buffers: the channel kernels' statistics of x seen as one sample of 2 channels
    rm, rv = cp.zeros(2), cp.ones(2)
    y, sv = norm.instance_norm(g, None, None, rm, rv, eps=EPS)
    dx, _, _ = norm.instance_norm_backward(dy, g, None, sv)
    _check("instance_norm running", x, y, sv.mean, sv.rstd, dx, rows)
    _check_running_var("instance_norm running", x, rows, rv)


# (N, C, S): per channel past one split of the channel kernel (S = 1: 256 rows a split), within one
# block of S > 1, and one sample of S values
@pytest.mark.parametrize("base", BASES, ids=repr)
@pytest.mark.parametrize("shape", [(3001, 2, 1), (5, 2, 1001), (1, 2, 3001)], ids=str)
def test_float64_batch_norm_channels_a_few_ulps_apart_get_their_exact_statistics(shape, base):
    x = _data(shape, base, sum(shape))
    g = cp.asarray(x)
    n, c, s = shape
    chans = np.arange(x.size).reshape(n, c, s).transpose(1, 0, 2).reshape(c, n * s)
    rm, rv = cp.zeros(c), cp.ones(c)
    y, sv = norm.batch_norm(g.reshape(shape if s > 1 else (n, c)), None, None, rm, rv, eps=EPS)
    dx, dw, _ = norm.batch_norm_backward(cp.asarray(_dy(shape)).reshape(y.shape), g.reshape(y.shape), cp.ones(c), sv)
    _check("batch_norm", x, y, sv.mean, sv.rstd, dx, chans, dw)
    _check_running_var("batch_norm", x, chans, rv)


@pytest.mark.parametrize("n", [7, 3001])
def test_float64_rms_norm_of_rows_a_few_ulps_apart(n):
    x = _data((2, n), 1.0e20, n)
    g = cp.asarray(x)
    y, sv = norm.rms_norm(g, (n,), eps=EPS)
    dx, _ = norm.rms_norm_backward(cp.asarray(_dy(x.shape)), g, None, sv)
    y, dx, inv = cp.asnumpy(y), cp.asnumpy(dx), cp.asnumpy(sv.inv_rms)
    for row in range(2):
        v = [Fraction(float(a)) for a in x[row]]
        r = 1 / math.sqrt(float(sum(a * a for a in v) / n) + EPS)
        assert float(inv[row]) == pytest.approx(r, rel=1e-12, abs=0), f"inv_rms {inv[row]} vs {r}"
        xh = x[row] * r
        assert np.max(np.abs(y[row] - xh)) <= 1e-12 * np.max(np.abs(xh))
        d = _dy(x.shape)[row]
        want = r * (d - xh * np.mean(d * xh))
        assert np.max(np.abs(dx[row] - want)) <= 1e-9 * np.max(np.abs(want))
