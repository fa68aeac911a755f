"""optkern.hessian: operators, the fused Lanczos step, extreme eigenvalues, trace
estimators, SLQ density and gradient concentration, against dense references."""

import os
import subprocess
import sys

import numpy as np
import pytest

from optkern import _backend, hessian
from optkern.nn import MLP

# ---- the fused CGS2 step ------------------------------------------------------


def ref_cgs2(Q, k, w):
    w = w.astype(np.float64).copy()
    Qk = Q[:k].astype(np.float64)
    c1 = Qk @ w
    w -= Qk.T @ c1
    c2 = Qk @ w
    w -= Qk.T @ c2
    b = np.linalg.norm(w)
    return w / b, b, c1 + c2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(1, 0), (7, 3), (1023, 5), (5000, 17)])
def test_lanczos_orthogonalize_matches_reference(n, k, dtype):
    rng = np.random.default_rng(n + k)
    m = max(k, 1)
    Q = np.linalg.qr(rng.standard_normal((n, m)))[0].T.copy() if n >= m else np.ones((m, n))
    Q = np.ascontiguousarray(Q[:m]).astype(dtype)
    w = rng.standard_normal(n).astype(dtype) + (Q[:k].T @ rng.standard_normal(k)).astype(dtype)
    want, b_want, c_want = ref_cgs2(Q, k, w)
    coeffs = np.full(k + 2, 7.0)
    b = _backend.cpu.lanczos_orthogonalize_(Q, k, w, coeffs)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert abs(b - b_want) <= tol * b_want
    np.testing.assert_allclose(w, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(coeffs[:k], c_want, rtol=tol, atol=tol)
    assert np.all(coeffs[k:] == 7.0)
    if k:
        assert np.abs(Q[:k].astype(np.float64) @ w).max() <= 10 * tol


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(1, 0), (7, 3), (1023, 5), (5000, 17)])
def test_lanczos_orthogonalize_one_pass_matches_reference(n, k, dtype):
    # passes=1 (partial reorthogonalization): one classical Gram-Schmidt pass, then normalize.
    rng = np.random.default_rng(n + k + 1)
    m = max(k, 1)
    Q = np.linalg.qr(rng.standard_normal((n, m)))[0].T.copy() if n >= m else np.ones((m, n))
    Q = np.ascontiguousarray(Q[:m]).astype(dtype)
    w = rng.standard_normal(n).astype(dtype) + (Q[:k].T @ (1e-4 * rng.standard_normal(k))).astype(dtype)
    Qd, ref = Q[:k].astype(np.float64), w.astype(np.float64)
    c = Qd @ ref
    ref -= Qd.T @ c
    b_ref = np.linalg.norm(ref)
    coeffs = np.full(k + 2, 7.0)
    b = _backend.cpu.lanczos_orthogonalize_(Q, k, w, coeffs, 1)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert abs(b - b_ref) <= tol * b_ref
    np.testing.assert_allclose(w, ref / b_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(coeffs[:k], c, rtol=tol, atol=tol)
    assert np.all(coeffs[k:] == 7.0)
    if k:  # components of 1e-4 leave about eps after one pass
        assert np.abs(Qd @ w).max() <= 10 * tol
    with pytest.raises(ValueError, match="^passes: expected 1 or 2, got 3"):
        _backend.cpu.lanczos_orthogonalize_(Q, k, w.copy(), coeffs, 3)


def test_lanczos_orthogonalize_rejects_bad_input():
    Q = np.zeros((4, 10))
    w, c = np.ones(10), np.zeros(4)
    f = _backend.cpu.lanczos_orthogonalize_
    with pytest.raises(ValueError, match=r"k: must be in \[0, 4\]"):
        f(Q, 5, w, c)
    with pytest.raises(ValueError, match=r"w: expected shape \(10,\)"):
        f(Q, 2, np.ones(9), c)
    with pytest.raises(TypeError, match="w: expected float64, got float32"):
        f(Q, 2, np.ones(10, np.float32), c)
    with pytest.raises(ValueError, match="coeffs"):
        f(Q, 3, w, np.zeros(2))
    with pytest.raises(ValueError, match="shares memory"):
        f(Q, 2, Q[2], c)


def test_lanczos_orthogonalize_rejects_more_bad_input_before_writing():
    rng = np.random.default_rng(40)
    Q = np.ascontiguousarray(np.linalg.qr(rng.standard_normal((10, 4)))[0].T)
    w0 = rng.standard_normal(10)
    f = _backend.cpu.lanczos_orthogonalize_
    w, c = w0.copy(), np.full(4, 7.0)
    ro = w0.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="^w: array is read-only"):
        f(Q, 2, ro, c)
    with pytest.raises(ValueError, match="^Q: array must be C-contiguous"):
        f(np.asfortranarray(Q), 2, w, c)
    with pytest.raises(TypeError, match="^coeffs: expected float64, got float32"):
        f(Q, 2, w, np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="^coeffs: expected float64, got float32"):
        f(Q.astype(np.float32), 2, w.astype(np.float32), np.zeros(4, np.float32))
    buf = np.zeros(48)
    Qs = buf[:40].reshape(4, 10)
    Qs[:] = Q
    with pytest.raises(ValueError, match=r"^coeffs(\[0\])? shares memory with Q"):
        f(Qs, 2, w, buf[36:])  # coeffs overlaps the last row of Q
    assert np.array_equal(w, w0) and np.all(c == 7.0) and np.array_equal(Qs, Q)
    # adjacent but disjoint is fine
    assert f(Qs, 2, w, buf[40:]) == pytest.approx(ref_cgs2(Q, 2, w0)[1], rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [7, 5000])
def test_lanczos_orthogonalize_w_in_span_of_q(n, dtype):
    """w in span(Q[:k]): the norm is 0 (exactly, with an exactly representable basis) and w has no NaN."""
    rng = np.random.default_rng(n)
    k = 3
    # signed unit vectors: every product and difference of the projection is exact
    idx = rng.choice(n, k, replace=False)
    Q = np.zeros((k + 1, n), dtype)
    Q[np.arange(k), idx] = rng.choice([-1.0, 1.0], k)
    Q[k, rng.choice(np.setdiff1d(np.arange(n), idx))] = 1.0
    w = np.zeros(n, dtype)
    w[idx] = rng.standard_normal(k)
    coeffs = np.full(k + 1, 7.0)
    b = _backend.cpu.lanczos_orthogonalize_(Q, k, w, coeffs)
    assert b == 0.0
    assert not np.isnan(w).any() and np.all(w == 0)  # left unscaled: no 0 / 0
    assert np.all(coeffs[k:] == 7.0)
    # a random orthonormal basis: the norm is at rounding level, w stays finite
    Q = np.ascontiguousarray(np.linalg.qr(rng.standard_normal((n, k)))[0].T).astype(dtype)
    a = rng.standard_normal(k)
    w = (Q.astype(np.float64).T @ a).astype(dtype)
    coeffs = np.full(k, 7.0)
    b = _backend.cpu.lanczos_orthogonalize_(Q, k, w, coeffs)
    eps = np.finfo(dtype).eps
    assert 0.0 <= b <= 100 * eps * np.linalg.norm(a)
    assert np.all(np.isfinite(w))
    np.testing.assert_allclose(coeffs, a, rtol=0, atol=100 * eps * np.abs(a).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lanczos_orthogonalize_empty_vectors(dtype):
    """n = 0: Q of shape (1, 0); the norm and the coefficients are 0, nothing else is touched."""
    f = _backend.cpu.lanczos_orthogonalize_
    coeffs = np.full(3, 7.0)
    assert f(np.zeros((1, 0), dtype), 1, np.zeros(0, dtype), coeffs) == 0.0
    assert coeffs[0] == 0.0 and np.all(coeffs[1:] == 7.0)
    coeffs = np.full(3, 7.0)
    assert f(np.zeros((1, 0), dtype), 0, np.zeros(0, dtype), coeffs) == 0.0
    assert np.all(coeffs == 7.0)


_DET_SCRIPT = r"""
import numpy as np, sys
from optkern import _backend
rng = np.random.default_rng(0)
Q = np.linalg.qr(rng.standard_normal((20011, 9)))[0].T.copy()
w = rng.standard_normal(20011)
c = np.zeros(9)
b = _backend.cpu.lanczos_orthogonalize_(Q, 9, w, c)
sys.stdout.write((w.tobytes() + c.tobytes() + np.float64(b).tobytes()).hex()[:100000:7])
"""


def test_lanczos_orthogonalize_is_bitwise_deterministic_across_thread_counts():
    outs = []
    for threads in ("1", "2", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        r = subprocess.run([sys.executable, "-c", _DET_SCRIPT], env=env, capture_output=True, text=True, check=True)
        outs.append(r.stdout)
    assert outs[0] and outs[0] == outs[1] == outs[2]


# ---- a dense reference problem ------------------------------------------------


@pytest.fixture(scope="module")
def problem():
    """A ~2,000-parameter tanh MLP, its dense Hessian (from HVPs) and the exact spectrum."""
    model = MLP([12, 40, 32, 6], activation="tanh", dtype=np.float64)
    rng = np.random.default_rng(0)
    p = model.init_params(0) + 0.1 * rng.standard_normal(model.num_params)
    x = rng.standard_normal((64, 12))
    y = rng.integers(0, 6, 64)
    op = hessian.from_mlp(model, p, x, y)
    n = model.num_params
    H = op.matmat(np.eye(n))
    H = (H + H.T) / 2
    evals, evecs = np.linalg.eigh(H)
    return model, p, x, y, op, H, evals, evecs


def test_operator_is_a_scipy_linear_operator(problem):
    from scipy.sparse.linalg import LinearOperator, eigsh

    model, p, x, y, op, H, evals, _ = problem
    assert isinstance(op, LinearOperator) and isinstance(op, hessian.CurvatureOperator)
    assert op.shape == (model.num_params,) * 2 and op.dtype == np.float64
    v = np.random.default_rng(1).standard_normal(op.shape[0])
    np.testing.assert_allclose(op @ v, H @ v, rtol=1e-10, atol=1e-13)
    assert (op @ v[:, None]).shape == (op.shape[0], 1)
    V = np.random.default_rng(2).standard_normal((op.shape[0], 3))
    np.testing.assert_allclose(op.matmat(V), H @ V, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(op.rmatvec(v), H @ v, rtol=1e-10, atol=1e-13)
    vals = eigsh(op, k=3, which="LA", return_eigenvectors=False, tol=1e-12)
    np.testing.assert_allclose(np.sort(vals), evals[-3:], rtol=1e-8)
    with pytest.raises(ValueError, match="v: expected shape"):
        op.matvec(v[:-1])


def test_lanczos_top5_and_bottom_eigenvalues_match_eigh(problem):
    *_, op, H, evals, evecs = problem
    top = hessian.top_eigenvalues(op, k=5, which="LA", return_eigenvectors=True)
    assert top.converged
    np.testing.assert_allclose(top.eigenvalues, evals[::-1][:5], rtol=1e-8)
    for i in range(5):  # Ritz vectors are eigenvectors
        u = top.eigenvectors[:, i]
        assert np.linalg.norm(H @ u - top.eigenvalues[i] * u) <= 1e-7 * abs(top.eigenvalues[i])
    bot = hessian.top_eigenvalues(op, k=3, which="SA")
    np.testing.assert_allclose(bot.eigenvalues, evals[:3], rtol=1e-8)
    lm = hessian.top_eigenvalues(op, k=2, which="LM")
    want = evals[np.argsort(-np.abs(evals))[:2]]
    np.testing.assert_allclose(lm.eigenvalues, want, rtol=1e-8)


def test_power_iteration_finds_the_dominant_eigenvalue(problem):
    *_, op, H, evals, _ = problem
    lam = evals[np.argmax(np.abs(evals))]
    r = hessian.power_iteration(op, max_iter=500, tol=1e-10)
    assert r.converged and abs(r.eigenvalue - lam) <= 1e-4 * abs(lam)


def test_lanczos_basis_is_orthonormal_and_tridiagonalizes(problem):
    *_, op, H, evals, _ = problem
    alpha, beta, Q = hessian.lanczos(op, 60, return_vectors=True, seed=3)
    assert alpha.shape == (60,) and beta.shape == (59,) and Q.shape == (60, H.shape[0])
    np.testing.assert_allclose(Q @ Q.T, np.eye(60), atol=1e-12)
    T = Q @ H @ Q.T
    np.testing.assert_allclose(np.diag(T), alpha, atol=1e-10 * evals[-1])
    np.testing.assert_allclose(np.diag(T, 1), beta, atol=1e-10 * evals[-1])
    assert np.abs(np.triu(T, 2)).max() <= 1e-10 * evals[-1]
    # The plain three-term recurrence loses orthogonality: full reorthogonalization matters.
    _, _, Qn = hessian.lanczos(op, 60, reorthogonalize="none", return_vectors=True, seed=3)
    assert np.abs(Qn @ Qn.T - np.eye(60)).max() > 1e-6


def test_lanczos_returns_ritz_pairs_on_request(problem):
    *_, op, H, evals, _ = problem
    alpha, beta, theta, U = hessian.lanczos(op, 80, seed=4, return_ritz=True)
    assert theta.shape == (len(alpha),) and U.shape == (H.shape[0], len(alpha))
    np.testing.assert_allclose(U.T @ U, np.eye(len(alpha)), atol=1e-10)
    # The extreme Ritz pairs have converged: eigenpairs of H.
    for i in (-1, -2, 0):
        u = U[:, i]
        assert np.linalg.norm(H @ u - theta[i] * u) <= 1e-6 * np.abs(evals).max()
    np.testing.assert_allclose(theta[-2:], evals[-2:], rtol=1e-8)
    # With the basis too: (alpha, beta, Q, theta, U), U = Q^T S.
    *_, Q, theta2, U2 = hessian.lanczos(op, 80, seed=4, return_vectors=True, return_ritz=True)
    np.testing.assert_array_equal(theta2, theta)
    np.testing.assert_allclose(U2, U, atol=1e-14)


def test_lanczos_stops_on_an_invariant_subspace():
    A = np.diag([3.0, 2.0, 1.0, 1.0, 1.0])
    alpha, beta = hessian.lanczos(A, 5, v0=np.ones(5))
    assert len(alpha) == 3  # the Krylov space of ones has dimension 3
    np.testing.assert_allclose(
        np.linalg.eigvalsh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)), [1, 2, 3], atol=1e-12
    )


def test_hutchinson_is_within_three_standard_errors(problem):
    *_, op, H, evals, _ = problem
    exact = np.trace(H)
    r = hessian.trace(op, method="hutchinson", num_matvecs=100, seed=11)
    assert r.num_matvecs == 100 and r.samples.shape == (100,)
    assert 0 < r.stderr and abs(r.estimate - exact) <= 3 * r.stderr
    # The same seed gives the same probes.
    assert hessian.trace(op, num_matvecs=100, seed=11).estimate == r.estimate


def test_hutchpp_beats_hutchinson_on_a_decaying_spectrum():
    rng = np.random.default_rng(0)
    n = 300
    U = np.linalg.qr(rng.standard_normal((n, n)))[0]
    A = (U * (1.0 / np.arange(1, n + 1) ** 2)) @ U.T
    exact = np.trace(A)
    err = {"hutchinson": [], "hutch++": []}
    for seed in range(20):
        for method in err:
            err[method].append(abs(hessian.trace(A, method=method, num_matvecs=30, seed=seed).estimate - exact))
    # Hutch++ captures the top of the spectrum exactly; its mean error is several times smaller.
    assert np.mean(err["hutch++"]) < 0.5 * np.mean(err["hutchinson"])
    with pytest.raises(ValueError, match="hutch\\+\\+ needs at least 3"):
        hessian.trace(A, method="hutch++", num_matvecs=2)


def _w1(x1, w1, x2, w2):
    """Wasserstein-1 distance between two discrete measures on the line (integral of |F1 - F2|)."""
    pts = np.concatenate([x1, x2])
    order = np.argsort(pts, kind="stable")
    dF = np.concatenate([w1, -np.asarray(w2)])[order]
    F = np.cumsum(dF)[:-1]
    return float(np.sum(np.abs(F) * np.diff(pts[order])))


def test_slq_density_matches_the_exact_spectrum(problem):
    *_, op, H, evals, _ = problem
    d = hessian.spectral_density(op, num_probes=8, steps=80, grid=2000, seed=5)
    n = len(evals)
    w = d.weights.ravel() / d.weights.shape[0]
    assert d.nodes.shape == (8, 80) and np.allclose(d.weights.sum(axis=1), 1)
    dist = _w1(d.nodes.ravel(), w, evals, np.full(n, 1 / n))
    spread = evals[-1] - evals[0]
    # Threshold: 1% of the spectral range (observed 0.3%); a spectrum shifted by 2% of the range fails it.
    assert dist <= 0.01 * spread
    assert _w1(d.nodes.ravel(), w, evals + 0.02 * spread, np.full(n, 1 / n)) > 0.01 * spread
    # The broadened density integrates to ~1 and its mean estimates tr(H) / n.
    assert abs(np.trapezoid(d.density, d.grid) - 1) < 1e-3
    assert abs(d.mean() - evals.mean()) < 0.05 * np.abs(evals).mean() + 1e-3 * spread


def test_gradient_concentration_matches_the_exact_projection(problem):
    model, p, x, y, op, H, evals, evecs = problem
    _, g = model.loss_and_grad(p, x, y)
    U = evecs[:, -5:]
    want = np.sum((U.T @ g) ** 2) / (g @ g)
    got = hessian.gradient_concentration(op, g, 5)
    assert abs(got - want) <= 1e-6
    assert 0 < got < 1


def test_from_hvp_from_grad_and_as_operator():
    rng = np.random.default_rng(0)
    n = 40
    B = rng.standard_normal((n, n))
    A = B + B.T
    op = hessian.from_hvp(lambda v: A @ v, n, np.float64)
    v = rng.standard_normal(n)
    np.testing.assert_allclose(op(v), A @ v)
    assert op.num_matvecs == 1
    # Gradient of the quartic f(p) = sum(p^4)/4 + p^T A p / 2: H = diag(3 p^2) + A.
    p0 = rng.standard_normal(n)
    fd = hessian.from_grad(lambda q: q**3 + A @ q, p0)
    want = 3 * p0**2 * v + A @ v
    assert np.linalg.norm(fd @ v - want) <= 1e-8 * np.linalg.norm(want)
    np.testing.assert_array_equal(fd @ np.zeros(n), np.zeros(n))
    with pytest.raises(TypeError, match="fn: expected a callable"):
        hessian.from_hvp(3, n)
    with pytest.raises(ValueError, match="A: expected a square matrix"):
        hessian.as_operator(np.ones((3, 4)))
    with pytest.raises(ValueError, match="kind"):
        hessian.from_mlp(MLP([2, 2]), MLP([2, 2]).init_params(), kind="fisher")
    with pytest.raises(ValueError, match="which"):
        hessian.top_eigenvalues(A, which="BE")


def test_probes_are_the_counter_based_rademacher_stream():
    import optkern.random

    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 30))
    A = A + A.T
    r = hessian.trace(A, num_matvecs=4, seed=7)
    for i in range(4):
        z = optkern.random.rademacher((30,), seed=7, offset=30 * i, dtype=np.float64)
        assert set(np.unique(z)) == {-1.0, 1.0}
        assert r.samples[i] == pytest.approx(z @ A @ z, rel=1e-13)


def test_estimators_report_progress(problem):
    *_, op, H, evals, _ = problem
    calls = []
    cb = lambda done, total: calls.append((done, total))
    r = hessian.trace(op, "hutch++", 30, seed=1, progress=cb)
    assert calls[-1] == (30, 30) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert r.estimate == hessian.trace(op, "hutch++", 30, seed=1).estimate  # same result with a callback
    calls.clear()
    hessian.spectral_density(op, num_probes=2, steps=10, progress=cb)
    assert calls[-1] == (20, 20) and len(calls) == 20
    calls.clear()
    alpha, _ = hessian.lanczos(op, 15, progress=cb)
    assert calls[-1] == (len(alpha), 15)
    calls.clear()
    top = hessian.top_eigenvalues(op, 2, progress=cb)
    assert calls[-1][0] == top.steps and calls[-1][1] >= top.steps
    with pytest.raises(TypeError, match="progress"):
        hessian.trace(op, num_matvecs=3, progress=5)
