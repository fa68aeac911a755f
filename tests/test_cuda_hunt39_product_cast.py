"""CUDA twin of test_hunt39_product_cast: a CuPy float64 product past a float32 operator's range.
CuPy's cast overflows to inf without a warning: ``matvec`` returned the inf product, and the
estimators blamed ``op``. Now ValueError naming the function, as on NumPy.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import hessian

cp, _cuda = require_gpu()

N = 4


def _op():
    return hessian.from_hvp(lambda v: v.astype(cp.float64) * 1e300, N, np.float32, xp=cp)


def test_a_cupy_product_past_the_operators_dtype_is_refused_naming_fn():
    with pytest.raises(ValueError, match=r"^fn: .*float32"):
        _op().matvec(cp.ones(N, dtype=cp.float32))
    with pytest.raises(ValueError, match=r"^fn: .*float32"):
        hessian.trace(_op(), num_matvecs=3)


def test_a_cupy_product_in_range_is_cast():
    op = hessian.from_hvp(lambda v: v.astype(cp.float64) * 1e30, N, np.float32, xp=cp)
    y = op.matvec(cp.arange(1, N + 1, dtype=cp.float32))
    assert y.dtype == cp.float32
    np.testing.assert_array_equal(cp.asnumpy(y), (np.arange(1, N + 1) * 1e30).astype(np.float32))
