"""top_eigenvalues' engine (optkern.hessian.krylov): breakdown, block Lanczos, thick restart;
operator composition (``H @ H``, ``H.dot(H)``) as SciPy operators compose."""

import numpy as np
import pytest
import scipy.sparse.linalg as sla

from optkern import hessian
from optkern.hessian.krylov import BlockKrylov
from optkern.hessian.operators import CurvatureOperator, as_operator


def sym(n, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    return (A + A.T) / 2


@pytest.mark.parametrize("n,k", [(50, 2), (7, 7), (1, 1), (30, 5)])
@pytest.mark.parametrize("block_size", [1, 3])
def test_identity_breaks_down_and_restarts(n, k, block_size):
    # Every product lies in the span of the basis: Lanczos must restart with new directions,
    # not return zeros marked converged (issue 13).
    b = min(block_size, n)
    r = hessian.top_eigenvalues(np.eye(n), k, block_size=b)
    np.testing.assert_allclose(r.eigenvalues, np.ones(k), atol=1e-13)
    assert r.converged


def test_invariant_subspace_from_v0_keeps_going():
    A = np.diag([4.0, 3.0, 2.0, 1.0, 0.5])
    r = hessian.top_eigenvalues(A, 3, v0=np.array([1.0, 0, 0, 0, 0]))  # v0 is an eigenvector
    np.testing.assert_allclose(r.eigenvalues, [4, 3, 2], atol=1e-12)
    assert r.converged


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
@pytest.mark.parametrize("block_size", [1, 2, 4])
def test_block_lanczos_matches_eigh(which, block_size):
    A = sym(200, 1)
    ev = np.linalg.eigvalsh(A)
    want = {"LA": ev[::-1], "SA": ev, "LM": ev[np.argsort(-np.abs(ev), kind="stable")]}[which][:4]
    r = hessian.top_eigenvalues(A, 4, which, block_size=block_size, return_eigenvectors=True)
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues, want, rtol=0, atol=1e-9 * np.abs(ev).max())
    U = r.eigenvectors
    assert U.shape == (200, 4)
    np.testing.assert_allclose(A @ U, U * r.eigenvalues, atol=1e-8)
    np.testing.assert_allclose(np.linalg.norm(A @ U - U * r.eigenvalues, axis=0), r.residuals, rtol=1e-3, atol=1e-10)


def test_block_lanczos_finds_a_repeated_eigenvalue():
    D = np.diag(np.r_[np.full(10, 5.0), np.linspace(0, 1, 90)])
    r = hessian.top_eigenvalues(D, 6, block_size=4)
    np.testing.assert_allclose(r.eigenvalues, np.full(6, 5.0), atol=1e-10)
    # one vector at a time may see a single copy (a Krylov space holds one vector per distinct eigenvalue
    # in exact arithmetic; from a +-1 start vector here it did, [5, 1]: from a uniform one the rounding
    # of the basis grows into the second copy, [5, 5])
    r1 = hessian.top_eigenvalues(D, 2)
    assert r1.eigenvalues[0] == pytest.approx(5.0, abs=1e-9)
    assert min(abs(r1.eigenvalues[1] - 5.0), abs(r1.eigenvalues[1] - 1.0)) <= 1e-9


@pytest.mark.parametrize("block_size,max_basis", [(1, 12), (1, 25), (2, 16), (3, 20)])
def test_thick_restart_bounds_the_basis_and_keeps_accuracy(block_size, max_basis):
    A = sym(300, 2)
    ev = np.linalg.eigvalsh(A)
    seen = []
    orig = BlockKrylov.step

    def spy(self):
        seen.append(self.m + 2 * self.b)  # basis rows in use, with the product block
        return orig(self)

    BlockKrylov.step = spy
    try:
        r = hessian.top_eigenvalues(A, 5, max_basis=max_basis, block_size=block_size, max_steps=5000)
    finally:
        BlockKrylov.step = orig
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues, ev[::-1][:5], atol=1e-9 * np.abs(ev).max())
    assert max(seen) <= max_basis + 2 * block_size
    full = hessian.top_eigenvalues(A, 5, block_size=block_size)
    np.testing.assert_allclose(r.eigenvalues, full.eigenvalues, atol=1e-9)


def test_restart_on_an_mlp_hessian_matches_eigh():
    from optkern.nn import MLP

    model = MLP([6, 10, 4], activation="tanh", dtype=np.float64)
    rng = np.random.default_rng(3)
    p = model.init_params(0) + 0.1 * rng.standard_normal(model.num_params)
    x, y = rng.standard_normal((20, 6)), rng.integers(0, 4, 20)
    op = hessian.from_mlp(model, p, x, y)
    H = op.matmat(np.eye(model.num_params))
    ev = np.linalg.eigvalsh((H + H.T) / 2)
    r = hessian.top_eigenvalues(op, 3, block_size=2, max_basis=14, max_steps=3000)
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues, ev[::-1][:3], rtol=1e-8)


def test_top_eigenvalues_rejects_bad_block_arguments():
    A = sym(20)
    with pytest.raises(ValueError, match="block_size"):
        hessian.top_eigenvalues(A, 2, block_size=0)
    with pytest.raises(ValueError, match="block_size"):
        hessian.top_eigenvalues(A, 2, block_size=21)
    with pytest.raises(ValueError, match="max_basis"):
        hessian.top_eigenvalues(A, 4, block_size=2, max_basis=5)  # needs k + b


def test_float32_operator_top_eigenvalues():
    A = sym(120, 4)
    ev = np.linalg.eigvalsh(A)
    r = hessian.top_eigenvalues(A.astype(np.float32), 3, block_size=2)
    np.testing.assert_allclose(r.eigenvalues, ev[::-1][:3], rtol=1e-4)


# ---- composition --------------------------------------------------------------


@pytest.fixture
def ops():
    A, B = sym(9, 5), sym(9, 6)
    return A, B, as_operator(A), as_operator(B)


def test_scipy_operators_compose(ops):
    A, B, H, G = ops
    v = np.random.default_rng(0).standard_normal(9)
    for P, M in ((H @ H, A @ A), (H.dot(H), A @ A), (H @ G, A @ B), (H.dot(G), A @ B), ((H @ G) @ H, A @ B @ A)):
        assert isinstance(P, sla.LinearOperator) and P.shape == (9, 9)
        np.testing.assert_allclose(P @ v, M @ v, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(P.rmatvec(v), M.T @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((H.dot(2.5)) @ v, 2.5 * A @ v, rtol=1e-14)
    np.testing.assert_allclose((3 * H) @ v, 3 * A @ v, rtol=1e-14)
    np.testing.assert_allclose(sla.eigsh(H @ H, 2)[0], np.sort(np.linalg.eigvalsh(A @ A))[-2:], rtol=1e-10)
    with pytest.raises(ValueError, match="Scalar"):
        H @ 2.0
    with pytest.raises(ValueError, match="shapes"):
        H @ as_operator(sym(4))


def test_duck_typed_operators_compose(ops):
    A, B, _, _ = ops
    H = CurvatureOperator(lambda x: A @ x, 9)  # the class CuPy operators use
    G = CurvatureOperator(lambda x: B @ x, 9)
    v = np.random.default_rng(1).standard_normal(9)
    V = np.random.default_rng(2).standard_normal((9, 3))
    P = H @ G
    np.testing.assert_allclose(P @ v, A @ B @ v, rtol=1e-12)
    np.testing.assert_allclose(P @ V, A @ B @ V, rtol=1e-12)
    np.testing.assert_allclose(P.rmatvec(v), B @ A @ v, rtol=1e-12)
    np.testing.assert_allclose(H.dot(H).matvec(v), A @ A @ v, rtol=1e-12)
    np.testing.assert_allclose((P @ H) @ v, A @ B @ A @ v, rtol=1e-12)
    np.testing.assert_allclose(H.dot(-2.0) @ v, -2 * A @ v, rtol=1e-14)
    assert P.shape == (9, 9) and P.dtype == np.float64


def _exact(A, k, which):
    ev = np.linalg.eigvalsh(A)
    return {"LA": ev[::-1], "SA": ev, "LM": ev[np.argsort(-np.abs(ev), kind="stable")]}[which][:k]


def _spectra(n, b):
    """Distinct eigenvalues, and a repeated one as often as a block of b sees (a Krylov space of
    one vector holds one copy of each eigenvalue: test_block_lanczos_finds_a_repeated_eigenvalue)."""
    yield np.linspace(-2.0, 3.0, n)
    yield np.r_[np.full(min(b, n), 2.5), np.linspace(-1.0, 1.0, n - min(b, n))]


@pytest.mark.parametrize("n,b", [(n, b) for n in range(1, 11) for b in range(1, 5) if b <= n])
def test_blocks_that_do_not_divide_n_still_fill_the_space(n, b):
    """n products are allowed: the last block is narrower where b does not divide n, the basis spans
    the whole space and the eigenvalues are exact, as with block_size=1. Whole blocks stopped at
    floor(n / b) * b products: n=5, b=3 gave 1.41 for the top eigenvalue 3 (converged=False)."""
    rng = np.random.default_rng(100 * n + b)
    for spectrum in _spectra(n, b):
        Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
        A = (Q * spectrum) @ Q.T
        scale = np.abs(spectrum).max()
        for k in range(1, n + 1):
            if spectrum[0] == spectrum[min(b, n) - 1] and k + b > n and b > 1:
                continue  # block size 1 is used (k + b > n): one copy of the repeated eigenvalue
            for which in ("LA", "SA", "LM"):
                for max_basis in (None, n + 3):
                    if max_basis is not None and max_basis < k + b:
                        continue
                    r = hessian.top_eigenvalues(A, k, which, block_size=b, max_steps=n, max_basis=max_basis)
                    want = _exact(A, k, which)
                    got = np.abs(r.eigenvalues) if which == "LM" else r.eigenvalues
                    want = np.abs(want) if which == "LM" else want
                    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * scale, err_msg=f"k={k} {which}")
                    assert r.converged and r.steps <= n


@pytest.mark.parametrize("n,b", [(5, 3), (7, 2), (10, 4), (9, 4)])
def test_the_whole_space_gives_exact_repeated_eigenvalues(n, b):
    """Any multiplicity is exact once the basis spans the space: the last block narrower (before:
    floor(n / b) * b products, never the space). A tiny tolerance still stops before n products where
    the residuals reach their floor (eps ||A||) and a sequence from random vectors that ended in an
    invariant subspace confirmed no further copy is wanted (test_hunt41n_lanczos); each (n, b) has
    runs that need the whole space."""
    rng = np.random.default_rng(n)
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    spectrum = np.r_[np.full(n - 2, 2.0), -0.5, 1.0]
    A = (Q * spectrum) @ Q.T
    steps = []
    for k in sorted({1, 2, n - b}):  # (k + b <= n: blocks of b are used)
        for which in ("LA", "SA"):
            r = hessian.top_eigenvalues(A, k, which, block_size=b, max_steps=3 * n, tol=1e-300, check_every=1)
            np.testing.assert_allclose(r.eigenvalues, _exact(A, k, which), rtol=0, atol=1e-12)
            assert r.steps <= n and r.converged  # (the residuals of the whole space are 0)
            steps.append(r.steps)
    assert n in steps, steps


def test_the_last_narrow_block_is_counted_and_reported():
    n, b = 11, 4
    A = np.diag(np.arange(1.0, n + 1))
    op = hessian.from_hvp(lambda v: A @ v, n, matmat=lambda V: A @ V)
    calls = []
    r = hessian.top_eigenvalues(op, 1, block_size=b, tol=1e-300, progress=lambda d, t: calls.append((d, t)))
    assert r.eigenvalues == pytest.approx([11.0], abs=1e-12)
    assert r.steps == op.num_matvecs == n and calls[-1] == (n, n)
    assert [d for d, _ in calls] == [4, 8, 11]  # two blocks of 4, then the 3 directions left


@pytest.mark.parametrize("block_size,max_basis,max_steps", [(3, 15, 3000), (1, 12, 700), (2, None, 7), (4, 10, 50)])
def test_progress_total_bounds_the_products_of_restarted_runs(block_size, max_basis, max_steps):
    """Thick restarts go on past n products (up to max_steps); the total said min(max_steps, n): a
    run of 3000 products reported (3000, 300)."""
    n = 300
    ev = np.r_[np.linspace(-1.0, 1.0, n - 5), 3.0, 4.0, 5.0, 6.0, 7.0]
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((n, n)))[0]
    A = (Q * ev) @ Q.T
    calls = []
    r = hessian.top_eigenvalues(
        A,
        5,
        "SA",
        block_size=block_size,
        max_basis=max_basis,
        max_steps=max_steps,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1][0] == r.steps <= max_steps
    assert all(d <= t for d, t in calls) and len({t for _, t in calls}) == 1


@pytest.mark.parametrize("k,block_size,max_basis", [(5, 4, 10), (4, 3, 8), (2, 4, 7)])
def test_a_max_basis_that_is_not_whole_blocks_restarts(k, block_size, max_basis):
    """The capacity was rounded down to whole blocks, below the k + b a restart needs: max_basis=10,
    block_size=4, k=5 failed an internal assertion (nk + 2 b <= cap + b) at the first restart."""
    A = sym(120, 4)
    ev = np.linalg.eigvalsh(A)
    r = hessian.top_eigenvalues(A, k, block_size=block_size, max_basis=max_basis, max_steps=20000)
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues, ev[::-1][:k], atol=1e-9 * np.abs(ev).max())
