"""Hunt 40i: a curvature operator's ``n`` whose vectors no array holds (more than 2**63 - 1 bytes
of the operator's dtype) is refused where it is given, naming ``n`` and the most it takes: it was
taken, and every estimator then failed with NumPy's unnamed "array is too big" / "Maximum allowed
dimension exceeded", or an internal ``shape:``."""

import numpy as np
import pytest

from optkern import hessian as H

INT64_MAX = 2**63 - 1


@pytest.mark.parametrize("dtype,itemsize", [(np.float64, 8), (np.float32, 4)])
@pytest.mark.parametrize("extra", [1, 2**10, 2**70])
@pytest.mark.parametrize("make", ["from_hvp", "CurvatureOperator"])
def test_n_no_vector_holds_is_refused_naming_n(dtype, itemsize, extra, make):
    most = INT64_MAX // itemsize
    n = most + extra
    ctor = H.from_hvp if make == "from_hvp" else H.CurvatureOperator
    want = rf"^n: must be <= {most} \(2\*\*63 - 1 bytes of {np.dtype(dtype).name}\), got {n}$"
    with pytest.raises(ValueError, match=want):
        ctor(lambda v: 2 * v, n, dtype)


def test_n_at_the_bound_is_taken():
    op = H.from_hvp(lambda v: 2 * v, INT64_MAX // 8, np.float64)
    assert op.shape == (INT64_MAX // 8, INT64_MAX // 8)
