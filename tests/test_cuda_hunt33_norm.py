"""CUDA norm sums of squares of long float32 rows (hunt 33).

RMS norm's Σx² (cuda/norm_rows.cu) and weight norm's ‖v‖² (cuda/norm_weight.cu) were summed in
float32 by each thread over M / 256 terms before the block's tree: for a row of similar values every
addition rounded the same way, the bias the CPU's sum_squares had (test_hunt32_norm): a constant row
of 65536 had inv_rms and ‖v‖ ~1e-5 off (y, w ~100 ulps; torch within an ulp). Now summed in double
as the CPU's are: the results agree with float64 references to the rounding of the output.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import norm

cp, _ = require_gpu()


@pytest.mark.parametrize("M", [2048, 65536])
@pytest.mark.parametrize("c", [3.3, 123.456, 1e4])
def test_float32_rms_norm_of_a_constant_row(M, c):
    x = np.full((2, M), c, np.float32)
    y, s = norm.rms_norm(cp.asarray(x), (M,), None, 1e-6)
    x64 = x.astype(np.float64)
    inv = 1 / np.sqrt((x64**2).mean(axis=1) + 1e-6)
    np.testing.assert_allclose(cp.asnumpy(s.inv_rms), inv, rtol=1e-7)
    np.testing.assert_allclose(cp.asnumpy(y), x64 * inv[:, None], rtol=2.4e-7)  # (two roundings of y ~ 1)


@pytest.mark.parametrize("M", [2048, 65536])
@pytest.mark.parametrize("dim", [None, 0])
def test_float32_weight_norm_of_a_constant_tensor(M, dim):
    v = np.full((2, M // 2), 123.456, np.float32)
    g = np.ones(1 if dim is None else 2, np.float32)
    w, s = norm.weight_norm(cp.asarray(v), cp.asarray(g), dim=dim)
    v64 = v.astype(np.float64)
    nrm = np.sqrt((v64**2).sum(axis=None if dim is None else 1, keepdims=True))
    np.testing.assert_allclose(cp.asnumpy(s.norm).reshape(-1), nrm.reshape(-1), rtol=1e-7)
    np.testing.assert_allclose(cp.asnumpy(w), v64 / nrm, rtol=2.4e-7)
