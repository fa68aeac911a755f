"""CUDA twin of tests/test_hunt39c_nadam.py: a NAdam state dict whose mu_product is 0 (beta1 = 0:
every product is 0 from the first step) loads into a CuPy NAdam, capturable (the product a live
device counter) or not, and resumes as the uninterrupted run."""

import numpy as np
import pytest

from gpu import require_gpu
from optkern.optim import NAdam

cp, _ = require_gpu()


@pytest.mark.parametrize("capturable", [False, True])
def test_a_zero_mu_product_loads_and_resumes_on_the_device(capturable):
    rng = np.random.default_rng(3906)
    grads = [cp.asarray(rng.standard_normal(7).astype(np.float32)) for _ in range(6)]
    kw = dict(betas=(0.0, 0.999), capturable=capturable)
    p = cp.linspace(-1, 1, 7, dtype=cp.float32)
    opt = NAdam([p], **kw)
    for g in grads[:3]:
        opt.step([g])
    sd = opt.state_dict()
    assert float(cp.asnumpy(cp.asarray(sd["state"][0]["mu_product"])).reshape(-1)[0]) == 0.0
    q = p.copy()
    opt2 = NAdam([q], **kw)
    opt2.load_state_dict(sd)
    for g in grads[3:]:
        opt.step([g])
        opt2.step([g])
    np.testing.assert_array_equal(cp.asnumpy(q), cp.asnumpy(p))
