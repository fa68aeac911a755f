"""CUDA twin of test_hunt33_curvature_scale: ``lanczos_orthogonalize_`` (cuda/linalg.cu) of a vector
near the ends of float64's range (or of a float32 one of norm below 2^-125) matches the CPU's scaled
path (rules::lanczos_sumsq_direct), and the estimators on CuPy operators scale with ``c``.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import _backend, hessian

cp, _cuda = require_gpu()
_cpu = _backend.cpu


@pytest.mark.parametrize("passes", [1, 2])
@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize(
    "dtype,c", [(np.float64, 1e-200), (np.float64, 1e200), (np.float64, 1e-310), (np.float32, 1e-39)]
)
@pytest.mark.parametrize("n", [7, 5000])
def test_lanczos_orthogonalize_near_the_ends_of_the_range_matches_the_cpu(n, dtype, c, k, passes):
    rng = np.random.default_rng(n)
    Q = np.ascontiguousarray(np.linalg.qr(rng.standard_normal((n, 3)))[0].T).astype(dtype)
    w = (rng.uniform(0.5, 1.0, n) * c).astype(dtype)
    wc, cc = w.copy(), np.zeros(3)
    bc = _cpu.lanczos_orthogonalize_(Q, k, wc, cc, passes)
    assert 0 < bc < np.inf and np.isfinite(wc).all()
    wg, cg = cp.asarray(w), cp.zeros(3)
    bg = _cuda.lanczos_orthogonalize_(cp.asarray(Q), k, wg, cg, passes)
    assert bg == pytest.approx(bc, rel=1e-12 if dtype == np.float64 else 1e-6)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(cp.asnumpy(wg), wc, rtol=tol, atol=tol)
    np.testing.assert_allclose(cp.asnumpy(cg)[:k], cc[:k], rtol=1e-9, atol=1e-9 * c)


def test_lanczos_orthogonalize_of_a_zero_or_non_finite_vector_on_the_gpu():
    Q = cp.asarray(np.eye(3, 7))
    w = cp.zeros(7)
    assert _cuda.lanczos_orthogonalize_(Q, 0, w, cp.zeros(3), 2) == 0.0
    assert not bool(w.any())
    w[1] = np.nan
    assert np.isnan(_cuda.lanczos_orthogonalize_(Q, 0, w, cp.zeros(3), 2))


@pytest.mark.parametrize("c", [2.0**-665, 2.0**665])
def test_lanczos_and_density_of_a_scaled_cupy_operator(c):
    n = 20
    M = np.random.default_rng(3).standard_normal((n, n))
    A = (M + M.T) / 2
    a, b = hessian.lanczos(cp.asarray(c * A), n, seed=1)
    T = np.diag(a) + np.diag(b, 1) + np.diag(b, -1)
    np.testing.assert_allclose(np.linalg.eigvalsh(T) / c, np.linalg.eigvalsh(A), rtol=0, atol=1e-9)
    want = hessian.spectral_density(cp.asarray(A), num_probes=2, steps=10, grid=30)
    got = hessian.spectral_density(cp.asarray(c * A), num_probes=2, steps=10, grid=30)
    np.testing.assert_allclose(got.grid / c, want.grid, rtol=1e-10)


@pytest.mark.parametrize("c", [1e-22, 1e20])
def test_cg_of_a_scaled_float32_system_on_the_gpu(c):
    n = 12
    rng = np.random.default_rng(1)
    M = rng.standard_normal((n, n))
    A = M @ M.T / n + np.eye(n)
    b = rng.standard_normal(n)
    r = hessian.cg(cp.asarray((c * A).astype(np.float32)), cp.asarray((c * b).astype(np.float32)))
    assert (r.info, r.negative_curvature) == (0, False)
    exact = np.linalg.solve(A, b)
    np.testing.assert_allclose(cp.asnumpy(r.x), exact, rtol=0, atol=2e-6 * np.abs(exact).max())
