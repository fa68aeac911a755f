"""CUDA twin of test_hunt39j_concentration: ``gradient_concentration`` re-orthonormalizes CuPy Ritz
vectors by the native Gram-Schmidt pass too (no QR): the CPU's fraction to rounding, dependent
columns refused at the first, the caller's eigenvectors left as they were.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import hessian

cp, _cuda = require_gpu()

TOL = {np.float64: 1e-12, np.float32: 2e-5}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("n", "k"), [(1, 1), (37, 5), (300, 9)])
def test_concentration_on_cupy_is_the_cpus(n, k, dtype):
    rng = np.random.default_rng(n + k)
    A = np.diag(rng.standard_normal(n)).astype(dtype)
    V = rng.standard_normal((n, k)).astype(dtype)
    V[:, -1] += 3.0 * V[:, 0]
    g = rng.standard_normal(n).astype(dtype)
    want = hessian.gradient_concentration(A, g, k, eigenvectors=V)
    Vd = cp.asarray(V)
    got = hessian.gradient_concentration(hessian.as_operator(cp.asarray(A)), cp.asarray(g), k, eigenvectors=Vd)
    assert got == pytest.approx(want, abs=TOL[dtype])
    np.testing.assert_array_equal(cp.asnumpy(Vd), V)  # (copied, not orthonormalized in place)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dependent_cupy_columns_are_refused(dtype):
    rng = np.random.default_rng(1)
    n = 64
    op = hessian.as_operator(cp.asarray(np.eye(n, dtype=dtype)))
    g = cp.asarray(rng.standard_normal(n).astype(dtype))
    V = rng.standard_normal((n, 4)).astype(dtype)
    V[:, 2] = V[:, 0] - 2.0 * V[:, 1]
    with pytest.raises(ValueError, match=r"^eigenvectors: columns 0..3 .*column 2 is in the span"):
        hessian.gradient_concentration(op, g, 4, eigenvectors=cp.asarray(V))
    V[:, 2] = 0.0
    with pytest.raises(ValueError, match=r"column 2 is zero"):
        hessian.gradient_concentration(op, g, 4, eigenvectors=cp.asarray(V))
