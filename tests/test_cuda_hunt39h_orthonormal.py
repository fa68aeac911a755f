"""CUDA twin of test_hunt39h_orthonormal: Hutch++'s basis and projections and block Lanczos's
orthogonalization go through the native Gram-Schmidt pass on CuPy vectors too (no QR, no GEMM):
the CPU's estimate of the same probes to rounding, exact on a rank-deficient operator.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import hessian

cp, _cuda = require_gpu()

TOL = {np.float64: 1e-10, np.float32: 2e-4}


def _sym(n, rank, seed=0):
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((n, n)))[0][:, :rank]
    return (U * (3.0 * 0.8 ** np.arange(rank))) @ U.T


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("n", "rank"), [(37, 37), (37, 2)])
def test_hutchpp_on_cupy_is_the_cpus_estimate(n, rank, dtype):
    A = _sym(n, rank, seed=n + rank).astype(dtype)
    want = hessian.trace(A, "hutch++", num_matvecs=24, seed=4)
    got = hessian.trace(hessian.as_operator(cp.asarray(A)), "hutch++", num_matvecs=24, seed=4)
    scale = 3.0 * max(rank, 1)
    assert got.estimate == pytest.approx(want.estimate, abs=TOL[dtype] * scale)
    np.testing.assert_allclose(got.samples, want.samples, atol=TOL[dtype] * scale)
    if rank < 24 // 3:  # (the sketch spans the range: the trace itself)
        assert got.estimate == pytest.approx(float(np.trace(A.astype(np.float64))), abs=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_block_lanczos_on_cupy_matches_eigh(dtype):
    A = _sym(41, 41, seed=2).astype(dtype)
    w = np.linalg.eigvalsh(A.astype(np.float64))
    r = hessian.top_eigenvalues(
        hessian.as_operator(cp.asarray(A)), 3, block_size=3, tol=1e-8 if dtype == np.float64 else 1e-4
    )
    np.testing.assert_allclose(np.sort(np.asarray(r.eigenvalues, dtype=np.float64)), w[-3:], atol=TOL[dtype] * 30)
