"""The curvature estimators on the built-in MLP's exact Hessian / GGN against direct computations
(54th hunt, d): the dense matrix formed column by column from ``from_mlp`` products, its
``numpy.linalg.eigh``, traces of its powers and the Rademacher probes the estimators draw
(``optkern.random``'s Philox stream, probe ``p`` of seed ``s`` regenerated alone)."""

import numpy as np
import pytest

from optkern import hessian
from optkern.hessian._probes import rademacher
from optkern.nn import MLP


def dense_problem(kind="hessian", norm="batch", dtype=np.float64, act="tanh"):
    rng = np.random.default_rng(0)
    m = MLP((3, 5, 4), activation=act, norm=norm, dtype=dtype)
    p = m.init_params(1)
    x, y = rng.standard_normal((7, 3)).astype(dtype), rng.integers(0, 4, 7)
    op = hessian.from_mlp(m, p, x, y, kind=kind)
    n = m.num_params
    A = op.matmat(np.eye(n, dtype=dtype)).astype(np.float64)
    return m, p, x, y, op, (A + A.T) / 2


@pytest.mark.parametrize("method, m", [("hutchinson", 3), ("hutchinson", 10), ("hutch++", 9), ("hutch++", 30)])
def test_trace_estimates_are_unbiased(method, m):
    """The mean over 300 seeds within 3 standard errors of the exact trace (an indefinite
    batch-norm Hessian: Hutch++'s deflation has no sign to lean on)."""
    *_, A = dense_problem()
    op = hessian.as_operator(A)
    est = np.array([hessian.trace(op, method, m, seed=s).estimate for s in range(300)])
    se = est.std(ddof=1) / np.sqrt(len(est))
    assert se > 0
    assert abs(est.mean() - np.trace(A)) <= 3 * se


def test_hutchinson_samples_are_the_probes_quadratic_forms():
    *_, op, A = dense_problem(kind="ggn")
    r = hessian.trace(op, "hutchinson", 5, seed=3)
    Z = np.stack([rademacher(A.shape[0], seed=3, index=i, dtype=np.float64, xp=np) for i in range(5)])
    want = np.einsum("ij,jk,ik->i", Z, A, Z)
    np.testing.assert_allclose(r.samples, want, rtol=1e-12, atol=1e-12 * np.abs(A).max())
    assert r.estimate == pytest.approx(want.mean(), rel=1e-12)
    assert r.stderr == pytest.approx(want.std(ddof=1) / np.sqrt(5), rel=1e-10)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-9), (np.float32, 2e-5)])
@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_top_eigenvalues_are_eighs(dtype, rtol, which):
    *_, op, A = dense_problem(dtype=dtype)
    w = np.linalg.eigvalsh(A)
    want = {"LA": w[::-1], "SA": w, "LM": w[np.argsort(-np.abs(w))]}[which][:3]
    r = hessian.top_eigenvalues(op, 3, which, return_eigenvectors=True)
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues, want, rtol=rtol, atol=rtol * np.abs(w).max())
    U = np.asarray(r.eigenvectors, np.float64)
    resid = np.linalg.norm(A @ U - U * r.eigenvalues, axis=0)
    assert resid.max() <= 50 * rtol * np.abs(w).max()


@pytest.mark.parametrize("reorthogonalize", ["full", "partial", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_slq_integrates_to_one_and_its_moments_are_the_probes(reorthogonalize, dtype):
    """Each probe's Gauss quadrature with m steps is exact for polynomials of degree < 2m: its
    k-th moment ``sum_i tau_i theta_i^k`` is ``z^T A^k z / n`` for the probe ``z`` itself; over
    probes, an estimate of ``trace(A^k) / n``. The broadened density integrates to 1 (but the tails
    past the grid's 3 sigma margin)."""
    *_, op, A = dense_problem(kind="ggn", norm="layer", dtype=dtype, act="gelu")
    n, steps, P = A.shape[0], 4, 3
    d = hessian.spectral_density(op, P, steps, seed=4, reorthogonalize=reorthogonalize)
    np.testing.assert_allclose(d.weights.sum(axis=1), 1.0, rtol=1e-12)
    assert abs(np.trapezoid(d.density, d.grid) - 1.0) < 1e-3
    scale = np.abs(np.linalg.eigvalsh(A)).max()
    tol = 1e-12 if dtype == np.float64 else 1e-6
    for p in range(P):
        z = rademacher(n, seed=4, index=p, dtype=np.float64, xp=np)
        Akz = z.copy()
        for k in range(1, 2 * steps):
            Akz = A @ Akz
            got = float((d.weights[p] * d.nodes[p] ** k).sum())
            assert abs(got - z @ Akz / n) <= tol * scale**k, (p, k)
    assert d.mean() == pytest.approx(
        np.mean([z @ A @ z for z in [rademacher(n, seed=4, index=p, dtype=np.float64, xp=np) for p in range(P)]]) / n,
        rel=1e-9 if dtype == np.float64 else 1e-5,
    )


def test_slq_moments_estimate_traces_of_powers():
    """Over 60 probes the quadrature's mean k-th moment is within 4 standard errors of trace(A^k) / n."""
    *_, op, A = dense_problem()
    n = A.shape[0]
    d = hessian.spectral_density(op, 60, 6, seed=1, probes_per_block=20)
    for k in (1, 2, 3):
        per = (d.weights * d.nodes**k).sum(axis=1)
        se = per.std(ddof=1) / np.sqrt(len(per))
        assert abs(per.mean() - np.trace(np.linalg.matrix_power(A, k)) / n) <= 4 * se


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_gradient_concentration_is_the_direct_projection(k, dtype, tol):
    m, p, x, y, op, A = dense_problem(dtype=dtype)
    g = m.loss_and_grad(p, x, y)[1]
    w, V = np.linalg.eigh(A)
    top = V[:, np.argsort(w)[::-1][:k]]
    g64 = g.astype(np.float64)
    want = float(np.sum((top.T @ g64) ** 2) / (g64 @ g64))
    assert hessian.gradient_concentration(op, g, k) == pytest.approx(want, abs=tol)
    assert hessian.gradient_concentration(op, g, k, eigenvectors=top) == pytest.approx(want, abs=tol)


def test_power_iteration_finds_the_largest_magnitude():
    *_, op, A = dense_problem()
    w = np.linalg.eigvalsh(A)
    r = hessian.power_iteration(op, max_iter=1000, tol=1e-10)
    assert r.converged
    assert r.eigenvalue == pytest.approx(w[np.argmax(np.abs(w))], rel=1e-8)
