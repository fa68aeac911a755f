"""CUDA twin of test_hunt45e_param_sums.py (hunt 45e): batch norm's redo of a non-finite dγ with dy
scaled (cuda/norm_scaled.cuh block_param_sums_scaled) sums its terms in double, scaled back and rounded
once, as the plain sums (GradSumOp) and the CPU's param_sums_scaled; it summed in float (each thread's
share and the block tree). Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it
on the CPU.
"""

import numpy as np

from gpu import require_gpu
from optkern import norm
from test_hunt45e_param_sums import _overflowing_products, _scaled_ref
from ulps import ulps_in_f32

cp, _ = require_gpu()

f32 = np.float32


def test_scaled_redo_of_dgamma_sums_in_double():
    n = 16384
    x, dy = _overflowing_products(2 * n, 47)
    x, dy = x.reshape(2, n).T.copy(), dy.reshape(2, n).T.copy()  # (N, C) = (n, 2)
    _, sv = norm.batch_norm(cp.asarray(x), eps=1e-5)
    _, dw, _ = norm.batch_norm_backward(cp.asarray(dy), cp.asarray(x), None, sv)
    dw = cp.asnumpy(dw)
    xh = ((x - cp.asnumpy(sv.mean)) * cp.asnumpy(sv.rstd)).astype(f32).T
    ref = _scaled_ref(dy.T, xh)
    assert np.isfinite(ref).all() and np.isfinite(dw).all(), (dw, ref)
    assert ulps_in_f32(dw, ref).max() == 0, (dw, ref, ulps_in_f32(dw, ref))
