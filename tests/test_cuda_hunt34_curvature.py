"""CUDA twin of test_hunt34_curvature: the estimators on products and multiples of CuPy operators.

``H @ G`` and ``H.dot(c)`` of CuPy operators are ``compose.Composed`` objects (SciPy's product
operators take NumPy vectors only). ``as_operator``, which every estimator calls, wrapped any object
with ``matvec`` as a NumPy operator: its NumPy probes went into the CuPy products, which came back
as CuPy arrays and were refused ("op.matvec: expected it to return a numpy array, got
cupy.ndarray"): no estimator ran on a composed CuPy operator.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import hessian

cp, _cuda = require_gpu()


def _pair(n=6, seed=0):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    A = (Q * np.linspace(1.0, 2.0, n)) @ Q.T
    B = (Q * np.linspace(0.5, 3.0, n)) @ Q.T  # (commuting with A: A B is symmetric)
    return A, B


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_estimators_take_composed_cupy_operators(dtype):
    A, B = _pair()
    H, G = hessian.as_operator(cp.asarray(A, dtype=dtype)), hessian.as_operator(cp.asarray(B, dtype=dtype))
    tol = 1e-9 if dtype == np.float64 else 1e-4
    # (A and B commute: their product is declared symmetric by wrapping it, as_operator; a bare H @ G is
    # refused by the symmetric estimators, tests/test_hunt38b_symmetric_product.py)
    HG = hessian.as_operator(H @ G)
    for P, M in ((HG, A @ B), (H.dot(2.5), 2.5 * A), (hessian.as_operator((H @ G).dot(-1.0)), -(A @ B))):
        ev = np.linalg.eigvalsh(M)
        r = hessian.top_eigenvalues(P, 1)
        assert r.eigenvalues[0] == pytest.approx(ev[-1], rel=tol)
        t = hessian.trace(P, "hutch++", num_matvecs=3 * M.shape[0])
        assert t.estimate == pytest.approx(np.trace(M), rel=tol)
        if ev[0] > 0:  # (cg: positive definite ones)
            x = hessian.cg(P, cp.ones(M.shape[0], dtype=dtype)).x
            np.testing.assert_allclose(cp.asnumpy(x), np.linalg.solve(M, np.ones(M.shape[0])), rtol=10 * tol)
        # (SLQ with a probe is stochastic: the same probes on the CPU, on the dense product)
        want = hessian.spectral_density(M.astype(dtype), steps=M.shape[0], grid=20).mean()
        assert hessian.spectral_density(P, steps=M.shape[0], grid=20).mean() == pytest.approx(want, rel=tol)


def test_float64_vectors_past_float32s_range_on_a_float32_cupy_operator():
    """test_hunt34_curvature's dtype rule on CuPy vectors: refused naming the argument, or (a direction)
    scaled into range, with the CPU's result."""
    A = _pair()[0].astype(np.float32)
    op = hessian.as_operator(cp.asarray(A))
    v = np.random.default_rng(3).uniform(0.5, 1.0, A.shape[0])
    with pytest.raises(ValueError, match="^v: .*float32"):
        op.matvec(cp.asarray(v * 1e39))
    with pytest.raises(ValueError, match="^b: .*float32"):
        hessian.cg(op, cp.asarray(v * 1e39))
    for scale in (1e39, 1e-50):
        got = hessian.top_eigenvalues(op, 2, v0=cp.asarray(v * scale)).eigenvalues
        np.testing.assert_allclose(got, hessian.top_eigenvalues(A, 2, v0=v).eigenvalues, rtol=1e-5)
        frac = hessian.gradient_concentration(op, cp.asarray(v * scale), 2)
        assert frac == pytest.approx(hessian.gradient_concentration(A, v, 2), rel=1e-4)
