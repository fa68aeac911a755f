"""Per-channel reductions with more channels than one launch has blocks (cuda/norm_channels.cuh): with
spatial dims (S > 1) a block reduces a channel, and the grid is capped at kChanGrid = 65536 blocks,
the channels past it taken grid-stride. The launch used to have one block per channel,
``unsigned(C)`` blocks: 2^31 channels or more were an invalid grid, 2^32 or more wrapped (a few
channels reduced, the others' partials never written). Those sizes need tens of GB; here 65536 + 77
channels take the grid-stride path, each block reducing a second channel after its first, and every
channel's statistics and parameter sums must equal the CPU module's (tolerances of
tests/test_cuda_norm.py).

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np

from gpu import require_gpu
from optkern import norm

cp, _cuda = require_gpu()

C = 65536 + 77  # channels: past the cap, so blocks 0..76 take a second channel


def _close(got, want, atol):
    np.testing.assert_allclose(cp.asnumpy(got).astype(np.float64), np.asarray(want, np.float64), rtol=1e-5, atol=atol)


def _pairs(rng, shape):
    c = rng.standard_normal(shape).astype(np.float32)
    return cp.asarray(c), c


def test_batch_norm_statistics_and_sums_past_the_grid_cap():
    rng = np.random.default_rng(51)
    shape = (2, C, 3)
    xg, xc = _pairs(rng, shape)
    dyg, dyc = _pairs(rng, shape)
    wg, wc = _pairs(rng, C)
    yg, sg = norm.batch_norm(xg, wg)
    yc, sc = norm.batch_norm(xc, wc)
    _close(sg.mean, sc.mean, 1e-5)
    _close(sg.rstd, sc.rstd, 1e-5)
    _close(yg, yc, 1e-5)
    for a, b in zip(norm.batch_norm_backward(dyg, xg, wg, sg), norm.batch_norm_backward(dyc, xc, wc, sc)):
        _close(a, b, 5e-4)


def test_group_norm_parameter_sums_past_the_grid_cap():
    """One group over C channels of S = 3: dweight / dbias reduce per channel over the samples
    (norm_rows.cu's channel_grad_sums, the same partial kernel)."""
    rng = np.random.default_rng(52)
    shape = (2, C, 3)
    xg, xc = _pairs(rng, shape)
    dyg, dyc = _pairs(rng, shape)
    wg, wc = _pairs(rng, C)
    bg, bc = _pairs(rng, C)
    yg, sg = norm.group_norm(xg, 1, wg, bg)
    yc, sc = norm.group_norm(xc, 1, wc, bc)
    _close(yg, yc, 1e-5)
    got, want = norm.group_norm_backward(dyg, xg, wg, sg), norm.group_norm_backward(dyc, xc, wc, sc)
    assert len(got) == len(want) == 3  # (dx, dweight, dbias)
    for a, b in zip(got, want):
        _close(a, b, 5e-4)
