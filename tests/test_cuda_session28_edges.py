"""The CUDA kernels on this session's native changes, against the CPU module bit for bit (the rules
are shared): clip_grad_norm_ with float32 gradients whose float64 norm passes float32's range (the
factor taken in double, the gradients clipped, not zeroed), and the ordinary factor's bits. Skipped
without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU."""

import numpy as np
import pytest

import optkern
from gpu import require_gpu, same_bits

cp, _ = require_gpu()


@pytest.mark.parametrize("scale", [3e38, 1.0])
@pytest.mark.parametrize("max_norm", [1.0, 0.25])
def test_clip_norm_past_float32_range(scale, max_norm):
    rng = np.random.default_rng(5)
    grads = [(rng.uniform(-1, 1, n) * scale).astype(np.float32) for n in (7, 1023, 1)]
    host = [g.copy() for g in grads]
    dev = [cp.asarray(g) for g in grads]
    norm = optkern.clip_grad_norm_(host, max_norm)
    dnorm = optkern.clip_grad_norm_(dev, max_norm)
    same_bits(cp.asnumpy(dnorm), np.array([norm]), "norm")
    for i, (h, d) in enumerate(zip(host, dev)):
        same_bits(cp.asnumpy(d), h, f"grads[{i}]")
    total = np.sqrt(sum(np.sum(h.astype(np.float64) ** 2) for h in host))
    assert total == pytest.approx(min(max_norm, norm), rel=1e-5)
