"""The CUDA ``nadam_given_`` (NAdam's update with step scalars the caller computed: optkern.torch's
tensor betas, ``_torch_scalars.nadam_scalars``) gives the CPU module's bits, L2 and decoupled."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import _cpu  # noqa: E402

# (c_grad, c_avg, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, bc2): torch's
# values from float32 tensor betas at step 3 with lr 1e-2, mu_product 0.8 (two decay forms)
_C = (-0.008592674508690834, -0.005374622065573931, 0.10000002384185791, 0.9990000128746033, 0.0009999871253967285)
SCALARS = [(*_C, 1e-8, 0.0, 0.999, 0.0029969215393066406), (*_C, 1e-8, 0.1, 1.0, 0.0029969215393066406)]


@pytest.mark.parametrize("scalars", SCALARS, ids=["decoupled", "l2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nadam_given_matches_the_cpu_module(dtype, scalars):
    rng = np.random.default_rng(0)
    sizes = (1, 7, 1023)
    # params, grads, exp_avgs, exp_avg_sqs (>= 0)
    host = [[rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(4)]
    host[3] = [np.abs(a) for a in host[3]]
    dev = [[cp.asarray(a) for a in h] for h in host]
    for maximize in (False, True):
        assert _cpu.nadam_given_(*host, *scalars, maximize) is None
        K.nadam_given_(*dev, *scalars, maximize)
    for h, d in zip(host, dev):
        for a, b in zip(h, d):
            np.testing.assert_array_equal(cp.asnumpy(b), a)
