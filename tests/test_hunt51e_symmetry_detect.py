"""A user's hvp that is not symmetric is refused by the Krylov estimators, at no extra product (51st hunt, e).

``from_hvp`` takes the user's word that ``fn`` is symmetric; Lanczos, SLQ and block Lanczos returned
eigenvalues of no operator for one that is not ("converged"). Each Lanczos step already has both
``q_{j-1}^T A q_j`` (a reorthogonalization coefficient) and ``q_j^T A q_{j-1}`` (the norm ``beta``
that made ``q_j``): ``_products.CouplingCheck`` compares them (ValueError naming ``op`` past
``0.25`` of ``||A||`` at two steps; a RuntimeWarning past the dtype's
rounding). Symmetric products stay accepted, also ones computed in float32 for a
float64 operator and central differences of gradients (``from_grad``)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian

N = 41


def _matrices(seed=0):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((N, N))
    return (M + M.T) / 2, M


def _estimators(op):
    return {
        "top_eigenvalues": lambda: hessian.top_eigenvalues(op, 3).eigenvalues,
        "top_eigenvalues_block": lambda: hessian.top_eigenvalues(op, 3, block_size=3).eigenvalues,
        "top_eigenvalues_restarted": lambda: hessian.top_eigenvalues(op, 2, max_basis=5, max_steps=400).eigenvalues,
        "lanczos_full": lambda: hessian.lanczos(op, 25)[0],
        "lanczos_partial": lambda: hessian.lanczos(op, 25, reorthogonalize="partial")[0],
        "lanczos_none": lambda: hessian.lanczos(op, 25, reorthogonalize="none")[0],
        "spectral_density": lambda: hessian.spectral_density(op, num_probes=2, steps=15).nodes,
    }


@pytest.mark.parametrize("name", list(_estimators(None)))
def test_not_symmetric_hvp_refused(name):
    _, M = _matrices()
    op = hessian.from_hvp(lambda v: M @ v, N)
    with pytest.raises(ValueError, match=r"^op: the operator is not symmetric"):
        _estimators(op)[name]()


@pytest.mark.parametrize("name", ["top_eigenvalues", "lanczos_none", "spectral_density"])
def test_not_symmetric_float32_hvp_refused(name):
    _, M = _matrices()
    M32 = M.astype(np.float32)
    op = hessian.from_hvp(lambda v: M32 @ v, N, dtype=np.float32)
    with pytest.raises(ValueError, match=r"^op: the operator is not symmetric"):
        _estimators(op)[name]()


def test_library_operators_not_checked():
    # from_mlp's products are symmetric by construction: in float32 at a trained point their rounding
    # reached 2% of ||A|| (a study run's curvature failed); they are trusted, a user's hvp is checked
    S, _ = _matrices(6)
    op = hessian.as_operator(S)
    assert op.trusted_symmetric and hessian.with_progress(op, lambda d, t: None, 5).trusted_symmetric
    assert not hessian.from_hvp(lambda v: S @ v, N).trusted_symmetric


@pytest.mark.parametrize("name", list(_estimators(None)))
def test_slightly_not_symmetric_warned(name):
    # ||A - A^T|| / ||A|| ~ 1e-2: eigenvalues off by ~that, reported converged to 1e-10 before; gaps of
    # 1e-3 .. 7e-3 of ||A||, float32 rounding's level: warned, not refused (h297)
    S, M = _matrices(1)
    A = S + 1e-2 * np.linalg.norm(S, 2) * (M - M.T) / np.linalg.norm(M - M.T, 2)
    op = hessian.from_hvp(lambda v: A @ v, N)
    with pytest.warns(RuntimeWarning, match="^op: the operator's products are not symmetric"):
        _estimators(op)[name]()


@pytest.mark.parametrize("name", list(_estimators(None)))
def test_symmetric_hvp_accepted_and_right(name):
    S, _ = _matrices(2)
    op = hessian.from_hvp(lambda v: S @ v, N)
    got = np.asarray(_estimators(op)[name]())
    assert np.isfinite(got).all()
    w = np.linalg.eigh(S)[0]
    if name.startswith("top_eigenvalues"):
        np.testing.assert_allclose(got, w[::-1][: len(got)], rtol=1e-8, atol=1e-8)
    else:  # (Ritz values / nodes lie inside the spectrum)
        assert got.min() >= w[0] - 1e-8 and got.max() <= w[-1] + 1e-8


def test_symmetric_products_in_float32_for_a_float64_operator_accepted():
    S, _ = _matrices(3)
    S32 = S.astype(np.float32)
    op = hessian.from_hvp(lambda v: S32 @ v.astype(np.float32), N)  # (products rounded to float32)
    r = hessian.top_eigenvalues(op, 2, tol=1e-5)
    np.testing.assert_allclose(r.eigenvalues, np.linalg.eigh(S32.astype(np.float64))[0][::-1][:2], rtol=1e-5)
    hessian.lanczos(op, N, reorthogonalize="none")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_symmetric_matrices_accepted(dtype):
    rng = np.random.default_rng(4)
    Q, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    A = ((Q * np.geomspace(1e-4, 1e2, 300)) @ Q.T).astype(dtype)
    A = (A + A.T) / 2
    op = hessian.from_hvp(lambda v: A @ v, 300, dtype=dtype)
    hessian.lanczos(op, 150, reorthogonalize="none")
    hessian.spectral_density(op, num_probes=2, steps=60)
    r = hessian.top_eigenvalues(op, 4, block_size=2)
    np.testing.assert_allclose(r.eigenvalues, np.geomspace(1e-4, 1e2, 300)[::-1][:4], rtol=1e-3)


def test_finite_difference_hessian_accepted():
    # from_grad: central differences of a gradient, symmetric only to ~eps^(2/3)
    rng = np.random.default_rng(5)
    W = rng.standard_normal((30, N)) / np.sqrt(N)
    x0 = rng.standard_normal(N)

    def grad(x):  # of f(x) = sum(log cosh(W x)) + |x|^4 / 4
        return W.T @ np.tanh(W @ x) + (x @ x) * x

    op = hessian.from_grad(grad, x0)
    Hd = W.T @ ((1 - np.tanh(W @ x0) ** 2)[:, None] * W) + (x0 @ x0) * np.eye(N) + 2 * np.outer(x0, x0)
    r = hessian.top_eigenvalues(op, 2, tol=1e-6)
    np.testing.assert_allclose(r.eigenvalues, np.linalg.eigh(Hd)[0][::-1][:2], rtol=1e-5)
    hessian.spectral_density(op, num_probes=2, steps=20)
