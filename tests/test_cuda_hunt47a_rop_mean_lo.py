"""CUDA twin of test_hunt47a_rop_mean_lo.py (47th hunt, a): the GPU's R-operator kernels
(cuda/norm_rop.cu) of groups far from 0 take every group's mean low part (lo_kernel, rules::mean_lo)
as the CPU's. Same data, reference and bounds. Skipped without CuPy / a device; runs on the CPU under
tools/cuda_emu."""

import numpy as np
import pytest

from gpu import require_gpu

cp, _ = require_gpu()

from test_hunt47a_rop_mean_lo import far_case  # noqa: E402


@pytest.mark.parametrize("axis", [1, 0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rop_far_from_zero(dtype, axis):
    got, want, scales, eps, _ = far_case(dtype, axis, cp)
    names = ["ry", "rxhat", "m_xrh", "dh", "rdh", "rdgamma"]
    for name, a, b, s in zip(names, got, want, scales):
        err = np.max(np.abs(a - b))
        assert err <= 16 * eps * s, (name, err / (eps * s))
