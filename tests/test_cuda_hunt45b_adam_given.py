"""The CUDA ``adam_given_`` (Adam's update with step scalars the caller computed: optkern.torch's
tensor betas / half lr, ``_torch_scalars``) gives the CPU module's bits, AMSGrad and L2 included."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import _cpu  # noqa: E402

# (step_size, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, bc2_sqrt): torch's
# values from float32 tensor betas at step 3 with lr 1e-2 (two decay forms)
SCALARS = [
    (0.036900369822978973, 0.10000002384185791, 0.999, 0.0010000000474974513, 1e-8, 0.0, 0.999, 0.054744),
    (0.036900369822978973, 0.10000002384185791, 0.999, 0.0010000000474974513, 1e-8, 0.1, 1.0, 0.054744),
]


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("scalars", SCALARS, ids=["decoupled", "l2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_given_matches_the_cpu_module(dtype, scalars, amsgrad):
    rng = np.random.default_rng(0)
    sizes = (1, 7, 1023)
    # params, grads, exp_avgs, exp_avg_sqs (>= 0), max_exp_avg_sqs (AMSGrad) or None
    host = [[rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(4)]
    host[3] = [np.abs(a) for a in host[3]]
    host.append([a * 1.5 for a in host[3]] if amsgrad else None)
    dev = [None if h is None else [cp.asarray(a) for a in h] for h in host]
    for maximize in (False, True):
        _cpu.adam_given_(*host, *scalars, maximize)
        K.adam_given_(*dev, *scalars, maximize)
    for h, d in zip(host, dev):
        for a, b in zip(h or [], d or []):
            np.testing.assert_array_equal(cp.asnumpy(b), a)
