"""clip_grads_with_norm_ on CuPy grads with a device total_norm of another dtype: the factor is
computed in the norm's dtype on the device (``rules::clip_coef_of`` in the kernel, no host
synchronization), the CPU's bits, which are torch's (tests/test_hunt43d_clip_norm_dtype.py)."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import clip  # noqa: E402

DTYPES = [np.float64, np.float32, np.float16]


@pytest.mark.parametrize("norm_dt", DTYPES)
@pytest.mark.parametrize("grad_dt", DTYPES)
def test_device_factor_in_the_norms_dtype_is_the_cpus(grad_dt, norm_dt):
    rng = np.random.default_rng(431)
    for _ in range(40):
        g = (rng.standard_normal(37) * 10 ** rng.uniform(-3, 3)).astype(grad_dt)
        norm = np.array([abs(rng.standard_normal()) * 10 ** rng.uniform(-4, 4)]).astype(norm_dt)
        max_norm = float(abs(rng.standard_normal()) * 10 ** rng.uniform(-2, 2))
        want = g.copy()
        clip.clip_grads_with_norm_([want], max_norm, norm)
        dev = cp.asarray(g)
        clip.clip_grads_with_norm_([dev], max_norm, cp.asarray(norm))
        assert np.array_equal(cp.asnumpy(dev), want), (g, norm, max_norm)
