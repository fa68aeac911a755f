"""CUDA twin of test_hunt44h_bn_grad_sums.py (hunt 44h): the GPU's per-channel gradient sums Σ dy and
Σ dy x̂ (cuda/norm_channels.cuh GradSumOp) in double for float32, as the CPU's GradSumKernel, and
batch norm's dx from their means through the shared rule (rules::grad_means, as the CPU). They give
batch norm's dx, dweight and dbias and every row norm's dweight / dbias. Summed in float (each
thread's share, the block tree and the K splits' merge), float32 channels of 524288 values with
dy = 1 + 0.01 N and x = 3 + N were off the exactly summed float32 terms by (relative, under
tools/cuda_emu, before the fix -> after):
  (N, C, S) = (262144, 2, 1): dx 1.2e-5 -> 0, dγ 3.4e-5 -> 0, dβ 1.2e-7 -> 0
  (16, 2, 32768):             dx 1.2e-5 -> 0, dγ 2.0e-5 -> 0, dβ 1.2e-7 -> 0
dβ one float32 ulp, which mean(dy) carried into dx divided by |dy - mean(dy)| ~ 0.01: against the
float64 reference dx was 1.1e-5 / 1.2e-5 off where the float32 formula with exact sums is 5.5e-6 /
7.9e-6 (now the same). Group norm's dγ, dβ (below): 2.0e-7, 6.7e-8 -> 0. Skipped without CuPy / the
CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

from fractions import Fraction

import numpy as np
import pytest

from gpu import require_gpu
from optkern import norm
from optkern.norm import functional as F
from test_hunt44h_bn_grad_sums import EPS, check, data

cp, _ = require_gpu()

f32, f64 = np.float32, np.float64


@pytest.mark.parametrize("shape", [(262144, 2, 1), (16, 2, 32768)])
def test_batch_norm_grad_sums_in_double(shape):
    x, dy = data(shape, 44)
    _, sv = norm.batch_norm(cp.asarray(x), eps=EPS)
    out = norm.batch_norm_backward(cp.asarray(dy), cp.asarray(x), None, sv)
    dx, dw, db = (cp.asnumpy(a) for a in out)
    # double sums rounded once: dγ, dβ the exact sums' roundings (the terms are float32)
    check(dx, dw, db, dy, x, cp.asnumpy(sv.mean), cp.asnumpy(sv.rstd), (1e-7, 0.0, 0.0))


# The row norms' dγ, dβ come from the same sums (statistics per row n G + c / Cg): group norm, 2 groups
# of 2 channels, 524288 values a channel: now the exact sums' float32 roundings.
def mean_lo(rows, mean, rstd):
    """The rows' mean low parts (rules::mean_lo, hunt 46a): where |mean| rstd > 1 (float32), the exact
    mean minus the float32 mean, rounded to float32; else 0. The exact sums as integers (float32
    values times 2^149)."""
    lo = np.zeros(len(rows), f32)
    for k, row in enumerate(rows):
        if np.abs(mean[k]) * rstd[k] > 1:
            exact = Fraction(sum(int(v) for v in row.astype(f64) * 2.0**149), len(row) << 149)
            lo[k] = f32(float(exact - Fraction(float(mean[k]))))
    return lo


def test_group_norm_param_sums_in_double():
    N, C, S = 4096, 4, 128
    x, dy = data((N, C, S), 45)
    _, sv = F.group_norm(cp.asarray(x), 2, None, None, EPS)
    _, dw, db = F.group_norm_backward(cp.asarray(dy), cp.asarray(x), None, sv)
    mean, rstd = cp.asnumpy(sv.mean).ravel(), cp.asnumpy(sv.rstd).ravel()
    mu = np.repeat(mean.reshape(N, 2), 2, axis=1)[:, :, None]  # (N, C, 1)
    rs = np.repeat(rstd.reshape(N, 2), 2, axis=1)[:, :, None]
    lo = np.repeat(mean_lo(x.reshape(N * 2, -1), mean, rstd).reshape(N, 2), 2, axis=1)[:, :, None]
    xh = (((x - mu) - lo) * rs).astype(f32)
    np.testing.assert_array_equal(cp.asnumpy(db), dy.sum((0, 2), dtype=f64).astype(f32))
    np.testing.assert_array_equal(cp.asnumpy(dw), (dy * xh).astype(f32).sum((0, 2), dtype=f64).astype(f32))
