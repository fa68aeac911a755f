"""Lanczos reorthogonalization modes (optkern.hessian.recurrence): partial (Simon's omega-recurrence)
against full, float32 basis storage, a host basis, no basis; SLQ probes run as one block."""

import numpy as np
import pytest

from optkern import _backend, hessian
from optkern.hessian.recurrence import LanczosRecurrence, run_lockstep
from optkern.nn import MLP


def tridiag_eigvals(alpha, beta):
    return np.linalg.eigvalsh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))


@pytest.fixture(scope="module")
def model_problem():
    """A ~2,000-parameter tanh MLP (float64), its exact Hessian spectrum and operator."""
    model = MLP([12, 40, 32, 6], activation="tanh", dtype=np.float64)
    rng = np.random.default_rng(0)
    p = model.init_params(0) + 0.1 * rng.standard_normal(model.num_params)
    x, y = rng.standard_normal((64, 12)), rng.integers(0, 6, 64)
    op = hessian.from_mlp(model, p, x, y)
    H = np.stack([op.matvec(e) for e in np.eye(model.num_params)], axis=1)
    return model, p, x, y, op, np.linalg.eigvalsh((H + H.T) / 2)


def diag_problem(n=1500, seed=0):
    """A dense-free operator with a known spectrum: outliers, a bulk and a cluster at 0."""
    rng = np.random.default_rng(seed)
    ev = np.concatenate([[40.0, 25.0, 12.0], rng.uniform(-1, 3, n - 103), np.zeros(100)])
    return hessian.from_hvp(lambda v: ev * v, n), np.sort(ev)


def run(op, steps, mode, seed=3, **kw):
    lz = LanczosRecurrence(op, steps, None, seed, mode, **kw)
    while not lz.done:
        lz.advance(op.matvec(lz.vector()))
    a, b, _ = lz.result()
    return tridiag_eigvals(a, b), lz


@pytest.mark.parametrize("steps", [30, 90, 250])
def test_partial_keeps_ritz_values_within_1e8_of_full(model_problem, steps):
    *_, op, ev = model_problem
    full, lf = run(op, steps, "full")
    part, lp = run(op, steps, "partial")
    assert len(full) == len(part) == steps
    np.testing.assert_allclose(part, full, rtol=0, atol=1e-8)
    top = 1 if steps < 60 else 3  # converged by then
    np.testing.assert_allclose(part[-top:], ev[-top:], rtol=0, atol=1e-10)
    assert lp.reorths < lf.reorths / 2  # most steps never read the basis


@pytest.mark.parametrize("steps", [60, 200])
def test_partial_on_a_known_spectrum(steps):
    op, ev = diag_problem()
    full, _ = run(op, steps, "full")
    part, lp = run(op, steps, "partial")
    np.testing.assert_allclose(part, full, rtol=0, atol=1e-8)
    np.testing.assert_allclose(part[-3:], ev[-3:], rtol=1e-12)
    assert 0 < lp.reorths < steps


def test_partial_basis_stays_semi_orthogonal(model_problem):
    *_, op, _ = model_problem
    _, lz = run(op, 200, "partial")
    Q = lz.basis()
    G = Q @ Q.T - np.eye(len(Q))
    assert np.abs(G).max() < 10 * np.sqrt(np.finfo(np.float64).eps)


def test_none_loses_orthogonality_but_keeps_no_basis(model_problem):
    *_, op, ev = model_problem
    none, lz = run(op, 150, "none")
    assert lz.basis() is None and lz.Q is None
    assert abs(none[-1] - ev[-1]) < 1e-10  # the top Ritz value is right ...
    assert np.sum(np.abs(none - ev[-1]) < 1e-8) >= 2  # ... with spurious copies


@pytest.mark.parametrize("mode", ["full", "partial"])
def test_float32_basis_accuracy_against_the_exact_spectrum(model_problem, mode):
    *_, op, ev = model_problem
    want, _ = run(op, 120, "full")
    got, lz = run(op, 120, mode, basis_dtype=np.float32)
    assert lz.Q.dtype == np.float32
    # semi-orthogonality at float32's sqrt(eps): Ritz values still agree to ~1e-9 here (measured 4e-10)
    np.testing.assert_allclose(got[-5:], ev[-5:], rtol=0, atol=1e-8)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)


def test_float32_basis_is_rejected_for_float32_wider():
    op = hessian.as_operator(np.eye(5, dtype=np.float32))
    with pytest.raises(TypeError, match="basis_dtype"):
        LanczosRecurrence(op, 3, None, 0, "full", np.float64)
    with pytest.raises(ValueError, match="reorthogonalize"):
        LanczosRecurrence(op, 3, None, 0, "selective")
    with pytest.raises(ValueError, match="basis"):
        LanczosRecurrence(op, 3, None, 0, "full", None, "disk")


@pytest.mark.parametrize("mode", ["full", "partial"])
def test_host_basis_equals_device_basis_on_numpy(model_problem, mode):
    *_, op, _ = model_problem
    a, _ = run(op, 50, mode)
    b, lz = run(op, 50, mode, basis="host")
    np.testing.assert_array_equal(a, b)
    assert isinstance(lz.Q, np.ndarray)


def test_lanczos_public_modes(model_problem):
    *_, op, ev = model_problem
    for mode in ("full", "partial"):
        alpha, beta, Q, theta, U = hessian.lanczos(
            op, 80, reorthogonalize=mode, return_vectors=True, return_ritz=True, seed=5
        )
        assert Q.shape == (80, op.shape[0])
        np.testing.assert_allclose(theta[-2:], ev[-2:], atol=1e-10)
    alpha, beta = hessian.lanczos(op, 80, reorthogonalize="none")
    assert alpha.shape == (80,) and beta.shape == (79,)
    *_, Q = hessian.lanczos(op, 80, reorthogonalize="none", return_vectors=True)  # kept only when asked
    assert Q.shape == (80, op.shape[0])


def test_cgs2_float32_basis_with_float64_vector_matches_reference():
    rng = np.random.default_rng(7)
    n, k = 1023, 9
    Q = np.linalg.qr(rng.standard_normal((n, k)))[0].T.astype(np.float32).copy()
    w = rng.standard_normal(n)
    Qd = Q.astype(np.float64)
    ref = w.copy()
    c = Qd @ ref
    ref -= Qd.T @ c
    c2 = Qd @ ref
    ref -= Qd.T @ c2
    b_ref = np.linalg.norm(ref)
    coeffs = np.zeros(k)
    b = _backend.cpu.lanczos_orthogonalize_(Q, k, w, coeffs)
    assert abs(b - b_ref) <= 1e-12 * b_ref
    np.testing.assert_allclose(w, ref / b_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(coeffs, c + c2, rtol=1e-12, atol=1e-14)
    with pytest.raises(TypeError, match="w: expected float64"):
        _backend.cpu.lanczos_orthogonalize_(Qd, k, w.astype(np.float32), coeffs)


@pytest.mark.parametrize("mode", ["full", "partial", "none"])
def test_lockstep_probes_equal_one_at_a_time(model_problem, mode):
    *_, op, _ = model_problem
    alone = []
    for p in range(3):
        lz = LanczosRecurrence(op, 40, None, 1, mode, index=p)
        while not lz.done:
            lz.advance(op.matvec(lz.vector()))
        alone.append(lz.result())
    recs = [LanczosRecurrence(op, 40, None, 1, mode, index=p) for p in range(3)]
    calls = op.num_matvecs
    run_lockstep(op, recs)
    assert op.num_matvecs - calls == 120
    for r, (a, b, _) in zip(recs, alone):
        ra, rb, _ = r.result()
        np.testing.assert_allclose(ra, a, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(rb, b, rtol=1e-10, atol=1e-12)


def _w1(x1, w1, x2, w2):
    grid = np.sort(np.concatenate([x1, x2]))
    c1 = np.array([w1[x1 <= t].sum() for t in grid])
    c2 = np.array([w2[x2 <= t].sum() for t in grid])
    return float(np.sum(np.abs(c1 - c2)[:-1] * np.diff(grid)))


@pytest.mark.parametrize("mode", ["partial", "none", "full"])
def test_slq_modes_match_the_exact_spectrum(model_problem, mode):
    *_, op, ev = model_problem
    d = hessian.spectral_density(op, num_probes=4, steps=60, reorthogonalize=mode, probes_per_block=2, grid=200)
    w1 = _w1(d.nodes.ravel(), d.weights.ravel() / 4, ev, np.full(len(ev), 1 / len(ev)))
    assert w1 < 0.02 * (ev[-1] - ev[0])
    assert abs(d.mean() - ev.mean()) < 0.2 * np.abs(ev).mean()
    ref = hessian.spectral_density(op, num_probes=4, steps=60, reorthogonalize="full", grid=200)
    if mode != "none":
        np.testing.assert_allclose(d.nodes, ref.nodes, atol=1e-8)
        np.testing.assert_allclose(d.weights, ref.weights, atol=1e-8)
