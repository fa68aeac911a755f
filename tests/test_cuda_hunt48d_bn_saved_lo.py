"""CUDA twin of test_hunt48d_bn_saved_lo.py (48th hunt, d): the GPU's channel_stats writes the means'
low parts (stats_redo_kernel, group_lo_kernel's bits) into lo, and the training forward and backward
take them from the saved state instead of launching group_lo_kernel and allocating its scratch each.
Same data; the bits against the calls without lo (which still launch it). Skipped without CuPy / a
device; runs on the CPU under tools/cuda_emu."""

import numpy as np
import pytest

from gpu import half_dtypes, raised, require_gpu

cp, cuda = require_gpu()

import optkern._cpu as cpu  # noqa: E402
from test_hunt48d_bn_saved_lo import EPS, SHAPES, check_lo_exact, check_same_bits, data  # noqa: E402 (after the skip)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64)] + half_dtypes(cp))
def test_saved_lo_keeps_bits(dtype, shape):
    sv = check_same_bits(dtype.type, shape, cp, cuda)
    assert float(sv.lo[1]) == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lo_is_the_mean_low_part(dtype):
    """The GPU's lo against the exact (math.fsum) means, not only against its own block code."""
    check_lo_exact(dtype, cp)


def test_ordinary_data_keeps_bits():
    sv = check_same_bits(np.float32, (64, 3, 17), cp, cuda, far=False)
    assert not bool(cp.any(sv.lo))


def bad_calls(mod, xp):
    """The errors of bad lo arguments to ``mod``'s channel calls; nothing written."""
    x, _, w, b = (xp.asarray(a) for a in data(np.float32, (8, 3, 5)))
    N, C, S = 8, 3, 5
    mean, rstd, var = (xp.full(C, 7.0, np.float32) for _ in range(3))
    y = xp.full(x.shape, 7.0, np.float32)
    got = [
        raised(lambda: mod.channel_norm_forward(x, mean, rstd, w, b, y, N, C, S, lo=mean)),
        raised(lambda: mod.channel_norm_backward(x, x, mean, rstd, w, y, None, None, N, C, S, False, mean)),
        raised(lambda: mod.channel_stats(x, mean, rstd, var, N, C, S, EPS, xp.empty(2, np.float32))),
        raised(lambda: mod.channel_stats(x, mean, rstd, var, N, C, S, EPS, rstd)),
    ]
    assert bool((y == 7.0).all()) and bool((mean == 7.0).all()) and bool((rstd == 7.0).all())
    return got


def test_bad_lo_as_the_cpu():
    """The same errors as the CPU module's, nothing written."""
    assert bad_calls(cuda, cp) == bad_calls(cpu, np)
