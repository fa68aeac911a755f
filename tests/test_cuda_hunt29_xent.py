"""The CUDA softmax cross-entropy kernels (cuda/nn.cu, one row per thread on rules/loss.hpp) on the cases
of test_hunt29_xent_rop_directions.py (directions near the dtype's max: rows redone with r scaled by a
power of two) and test_hunt29_xent_forward_large_logits.py (log p as (z - m) - log s: large logits,
logits near the max with label smoothing), against the same references (the device's exp is CUDA's,
not the CPU's polynomial: not bit for bit).

Skips (with the reason) without CuPy, without the CUDA module or without a device.
"""

import numpy as np
import pytest

from gpu import require_gpu

cp, _ = require_gpu()

import test_hunt29_xent_forward_large_logits as fwd  # noqa: E402
import test_hunt29_xent_rop_directions as rop  # noqa: E402
from optkern.nn.losses import xent_forward, xent_rop  # noqa: E402


def _host(*a):
    return [cp.asnumpy(t) for t in a]


@pytest.mark.parametrize("beta", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_rop_with_r_near_the_max(dtype, beta):
    rng = np.random.default_rng(7)
    z = rop.logits(rng, dtype, 9, 6)
    r = rop.big_rows(rng, dtype, 9, 6)
    _, logp, _ = xent_forward(z, np.zeros(9, np.int64), confidence_penalty=beta)
    (got,) = _host(xent_rop(cp.asarray(logp), cp.asarray(r), confidence_penalty=beta, scale=1.0 / 64))
    rop.check(got, rop.ref_rop(logp, r, beta, 1.0 / 64), r, dtype, 1.0 / 64, beta)
    assert got[3, 1] == 0 and np.isfinite(got).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_scale_applies_after_the_range_is_restored(dtype):
    m = rop.MAX[dtype]
    logp = np.log(np.array([[0.5, 0.5], [0.9, 0.1]])).astype(dtype)
    r = np.array([[m, -m], [m, -m]], dtype)
    (got,) = _host(xent_rop(cp.asarray(logp), cp.asarray(r), confidence_penalty=0.3, scale=4.0))
    np.testing.assert_array_equal(got[0], np.array([np.inf, -np.inf], dtype))
    rop.check(got[1:], rop.ref_rop(logp, r, 0.3, 4.0)[1:], r[1:], dtype, 4.0, 0.3)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_forward_with_large_logits_as_torch(dtype, eps):
    z, y = fwd.problem(dtype)
    loss, logp, g = _host(*xent_forward(cp.asarray(z), cp.asarray(y), label_smoothing=eps, confidence_penalty=0.3))
    t_loss, t_logp, t_g = fwd.torch_rows(z, y, eps, 0.3)
    assert np.isfinite(loss).all() and np.isfinite(g).all()
    fwd.close(loss, t_loss, dtype, "loss")
    np.testing.assert_allclose(logp, t_logp, rtol=8 * np.finfo(dtype).eps, atol=8 * np.finfo(dtype).eps)
    fwd.close(g, t_g, dtype, "dlogits")
