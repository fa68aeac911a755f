"""CUDA twin of test_hunt47k_bn_mean_lo.py (47th hunt, k): the GPU's batch-norm kernels
(cuda/norm_channels.cu) of channels far from 0 in training mode take each channel's mean low part
(channel_lo_kernel, rules::mean_lo) as the CPU's. Same data, reference and bounds. Skipped without
CuPy / a device; runs on the CPU under tools/cuda_emu."""

import ml_dtypes
import numpy as np
import pytest

from gpu import require_gpu

cp, _ = require_gpu()

from test_cuda_norm import _bf16_ok  # noqa: E402 (after the skip: it needs CuPy)
from test_hunt47k_bn_mean_lo import check_far, check_half  # noqa: E402

HALF = [np.float16] + ([ml_dtypes.bfloat16] if _bf16_ok() else [])


@pytest.mark.parametrize("shape", [(64, 3, 17), (1000, 3), (7, 2, 300)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_far_training_matches_float64(dtype, shape):
    check_far(dtype, shape, cp)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("shape", [(500, 2, 3), (3000, 2)])
def test_far_half(dtype, shape):
    check_half(dtype, shape, cp)
