"""Hunt 33, curvature numerics at the ends of the dtype's range: a spectrum, a trace and a solve of
``c A`` must be ``c`` times (for a solve: the same as) those of ``A`` for any ``c`` the entries can
hold -- the estimators' results are scale-equivariant, their rounding should be too.

* ``lanczos_orthogonalize_`` (the fused native pass behind ``lanczos``, ``spectral_density`` and
  ``top_eigenvalues``; cpp/linalg.cpp, cuda/linalg.cu) took ``beta = ||w||`` as the square root of a
  plain sum of squares: a float64 operator of entries ~1e200 overflowed it ("products are not
  finite" from ``lanczos`` and ``spectral_density``), of ~1e-200 underflowed it to 0 (a breakdown at
  the first step: one Ritz value, the first alpha). Now the rule of the normalizations
  (rules/second_order.hpp, ``lanczos_sumsq_direct``): out of range, summed again scaled by 2^-e.
* ``top_eigenvalues`` took NumPy's norms of the products (``ref`` of the breakdown test) and of the
  Ritz residuals: inf for a float64 ``1e200 A`` or a float32 ``1e30 A`` -- every step looked like a
  breakdown, the eigenvalues came from random replacement directions.
* ``trace``'s standard error was NumPy's ``std`` of the samples: inf for ``1e200 A``, 0 for ``1e-200 A``.
* ``from_grad`` took NumPy's norms of ``params`` (finite params of 1e200: "params: has NaN or Inf
  entries") and of the direction ``v`` (a ``v`` of 1e-200: norm 0, the product zeros; of 1e200: NaN).
* ``lanczos()`` still started from a Rademacher (+-1) vector by default, exactly orthogonal, half
  the time, to a top eigenvector ``(e1 - e2) / sqrt(2)``: its Ritz values then miss the top
  eigenvalue (the eigensolvers' default start has been uniform since hunt 32).
* ``cg`` in float32 on ``(c A) x = c b`` with ``c = 1e-20``: ``b`` was rescaled only outside
  ``2**+-200``, so the directions stayed ~1e-20 and their products ``A p`` ~1e-40 were subnormal (x off
  by 3e-5, "converged"); ``c = 1e-22``: ``A p`` underflowed to 0, reported as negative curvature (info
  -1) with a wrong x; ``c = 1e20``: ``A p`` overflowed ("the product is not finite"). (The dot
  products were already accumulated in float64, cpp/cg.cpp.) Now ``b`` is always scaled to
  ``1 <= max |b| < 2`` (a power of two: the same bits wherever nothing under- or overflowed).
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import _backend, hessian

_cpu = _backend.cpu

# Powers of two (~1e+-200, ~1e+-300; float32 ~1e+-30): c A is exact, so the results of c A and of A
# differ only by what the estimators' own rounding does with the scale.
SCALES = {np.float64: [2.0**-665, 2.0**665, 2.0**-997, 2.0**997], np.float32: [2.0**-100, 2.0**100]}
CASES = [(dt, c) for dt, cs in SCALES.items() for c in cs]


def _sym(n, seed=0):
    M = np.random.default_rng(seed).standard_normal((n, n))
    return (M + M.T) / 2


def _ritz(alpha, beta):
    return np.linalg.eigvalsh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))


def _rtol(dtype):
    return 1e-10 if dtype == np.float64 else 2e-5


@pytest.mark.parametrize("passes", [1, 2])
@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize("c", [1e-200, 1e200, 1e-310, 1e305])
def test_native_lanczos_normalization_of_a_vector_near_the_ends_of_float64(c, k, passes):
    """``beta`` and ``w / beta`` of ``c w``: ``c`` times and the same as those of ``w`` (k = 0: only the norm)."""
    n = 5000  # (more than one column block: the blocks' maxima and sums are combined)
    rng = np.random.default_rng(1)
    Q = np.linalg.qr(rng.standard_normal((n, 3)))[0].T.copy()
    w = rng.uniform(0.5, 1.0, n)
    want_w, want_co = w.copy(), np.zeros(3)
    want = _cpu.lanczos_orthogonalize_(Q, k, want_w, want_co, passes)
    got_w, got_co = c * w, np.zeros(3)
    got = _cpu.lanczos_orthogonalize_(Q, k, got_w, got_co, passes)
    assert got == pytest.approx(c * want, rel=1e-12)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-12, atol=1e-15)
    # (the projections of a subnormal w are subnormal: a few digits fewer)
    np.testing.assert_allclose(got_co, c * want_co, rtol=0, atol=(1e-12 if c > 1e-300 else 1e-9) * c)


@pytest.mark.parametrize("c", [1e-39, 1e-43])
def test_native_lanczos_normalization_of_a_float32_vector_of_subnormal_norm(c):
    """A float32 w of norm below 2^-125: w *= float(1 / beta) multiplied by inf (w NaN); now the scaled path."""
    w = np.random.default_rng(2).uniform(0.5, 1.0, 5).astype(np.float32)
    w64 = w.astype(np.float64)
    tiny = (w64 * c).astype(np.float32)  # (subnormal float32 entries: their own rounding)
    exact = tiny.astype(np.float64)
    beta = _cpu.lanczos_orthogonalize_(np.zeros((1, 5), np.float32), 0, tiny, np.zeros(1))
    assert beta == pytest.approx(np.linalg.norm(exact), rel=1e-12)
    np.testing.assert_allclose(tiny, exact / np.linalg.norm(exact), rtol=1e-6)


def test_top_eigenvalues_over_the_whole_space_of_a_tiny_float32_operator():
    """The last block of a whole space is rounding noise of a 1e-30 operator (norm ~1e-38): normalized, not NaN."""
    n = 30
    A = _sym(n, seed=0)
    r = hessian.top_eigenvalues((1e-30 * A).astype(np.float32), k=2, block_size=2)
    np.testing.assert_allclose(r.eigenvalues / 1e-30, np.linalg.eigvalsh(A)[::-1][:2], rtol=1e-5)


def test_native_lanczos_normalization_of_a_zero_or_non_finite_vector():
    Q = np.eye(3, 7)
    w = np.zeros(7)
    assert _cpu.lanczos_orthogonalize_(Q, 0, w, np.zeros(3)) == 0.0
    assert not w.any()
    w[1] = np.nan
    assert np.isnan(_cpu.lanczos_orthogonalize_(Q, 0, w, np.zeros(3)))
    w[1] = np.inf
    assert _cpu.lanczos_orthogonalize_(Q, 0, w, np.zeros(3)) == np.inf


@pytest.mark.parametrize("reorthogonalize", ["full", "partial", "none"])
@pytest.mark.parametrize("dtype,c", CASES)
def test_lanczos_ritz_values_of_a_scaled_operator(dtype, c, reorthogonalize):
    n = 24
    A = _sym(n)
    m = n if reorthogonalize == "full" else 12  # (past convergence "none" only multiplies rounding)
    want = _ritz(*hessian.lanczos(A.astype(dtype), m, reorthogonalize=reorthogonalize, seed=3))
    got = _ritz(*hessian.lanczos((c * A).astype(dtype), m, reorthogonalize=reorthogonalize, seed=3))
    assert len(got) == len(want) == m
    np.testing.assert_allclose(got / c, want, rtol=0, atol=_rtol(dtype) * np.abs(want).max())
    if reorthogonalize == "full":  # (a whole space: the exact eigenvalues)
        np.testing.assert_allclose(got / c, np.linalg.eigvalsh(A), rtol=0, atol=50 * _rtol(dtype))


@pytest.mark.parametrize("dtype,c", CASES)
def test_spectral_density_of_a_scaled_operator(dtype, c):
    A = np.diag(np.linspace(-2.0, 5.0, 30))
    want = hessian.spectral_density(A.astype(dtype), num_probes=2, steps=12, grid=50)
    got = hessian.spectral_density((c * A).astype(dtype), num_probes=2, steps=12, grid=50)
    np.testing.assert_allclose(got.grid / c, want.grid, rtol=_rtol(dtype))
    np.testing.assert_allclose(got.density * c, want.density, rtol=1e-3, atol=1e-6 * want.density.max())


@pytest.mark.parametrize("block_size", [1, 2])
@pytest.mark.parametrize("dtype,c", CASES)
def test_top_eigenvalues_of_a_scaled_operator(dtype, c, block_size):
    A = np.diag(np.r_[7.0, 6.0, np.linspace(-1.0, 3.0, 28)])
    r = hessian.top_eigenvalues((c * A).astype(dtype), k=2, block_size=block_size)
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues / c, [7.0, 6.0], rtol=_rtol(dtype) * 10)


@pytest.mark.parametrize("dtype,c", CASES)
def test_gradient_concentration_of_a_scaled_operator(dtype, c):
    """Scale-free in the operator (its top eigenvectors are those of A) and in the gradient."""
    A = np.diag(np.r_[9.0, 8.0, np.linspace(-1.0, 2.0, 22)])
    g = np.random.default_rng(6).standard_normal(24)
    want = hessian.gradient_concentration(A.astype(dtype), g.astype(dtype), 2)
    assert want == pytest.approx((g[0] ** 2 + g[1] ** 2) / (g @ g), rel=1e-5)
    got = hessian.gradient_concentration((c * A).astype(dtype), (c * g).astype(dtype), 2)
    assert got == pytest.approx(want, rel=_rtol(dtype) * 10)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
@pytest.mark.parametrize("dtype,c", CASES)
def test_trace_and_its_stderr_of_a_scaled_operator(dtype, c, method):
    A = _sym(40, seed=5) + 3 * np.eye(40)
    want = hessian.trace(A.astype(dtype), method, num_matvecs=12, seed=2)
    got = hessian.trace((c * A).astype(dtype), method, num_matvecs=12, seed=2)
    assert got.estimate / c == pytest.approx(want.estimate, rel=_rtol(dtype))
    assert 0 < want.stderr < np.inf
    assert got.stderr / c == pytest.approx(want.stderr, rel=_rtol(dtype))


def test_lanczos_default_start_finds_a_top_eigenvector_of_two_opposite_entries_for_every_seed():
    """diag(5, 1, ...) rotated so that the top eigenvector is ``(e1 - e2) / sqrt(2)``: a +-1 start vector
    with equal first two entries is orthogonal to it (half the seeds), and no Ritz value reaches 5."""
    n = 40
    u = np.zeros(n)
    u[:2] = [1.0, -1.0]
    u /= np.sqrt(2.0)
    A = 5.0 * np.outer(u, u) + np.diag(np.r_[0.0, 0.0, np.linspace(0.1, 1.0, n - 2)])
    wrong = [s for s in range(32) if abs(_ritz(*hessian.lanczos(A, 12, seed=s)).max() - 5.0) > 1e-8]
    assert wrong == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [1e-20, 1e-22, 1e-26, 1.0, 1e18, 1e20])
def test_cg_solution_of_a_scaled_system(c, dtype):
    """(c A) x = c b has the solution of A x = b, with the same convergence (float32: its range holds c b)."""
    if dtype == np.float64:
        c = c**10 if c != 1.0 else c  # (1e-200 .. 1e200: the same failures in float64's range)
    n = 12
    rng = np.random.default_rng(1)
    M = rng.standard_normal((n, n))
    A = M @ M.T / n + np.eye(n)
    b = rng.standard_normal(n)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    want = hessian.cg(A.astype(dtype), b.astype(dtype), rtol=rtol)
    got = hessian.cg((c * A).astype(dtype), (c * b).astype(dtype), rtol=rtol)
    assert (got.info, got.negative_curvature) == (want.info, want.negative_curvature) == (0, False)
    exact = np.linalg.solve(A, b)
    tol = 2e-6 * np.abs(exact).max() if dtype == np.float32 else 1e-11 * np.abs(exact).max()
    np.testing.assert_allclose(want.x, exact, rtol=0, atol=tol)
    np.testing.assert_allclose(got.x, exact, rtol=0, atol=tol)
    assert got.residual_norm / c <= rtol * np.linalg.norm(b) * 1.01


def test_cg_with_b_scaled_to_one_is_unchanged_bit_for_bit_in_range():
    """b scaled by a power of two: where nothing under- or overflows, x is the same bits as cg on 2**k b scaled back."""
    n = 9
    rng = np.random.default_rng(4)
    M = rng.standard_normal((n, n))
    A = (M @ M.T / n + np.eye(n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    r1 = hessian.cg(A, b * np.float32(2.0**-30))
    r2 = hessian.cg(A, b * np.float32(2.0**20))
    assert r1.iterations == r2.iterations
    assert np.array_equal(r1.x * np.float32(2.0**50), r2.x)


@pytest.mark.parametrize("p_scale,v_scale", [(1e200, 1.0), (1.0, 1e-200), (1.0, 1e200), (1e-200, 1e-200)])
def test_from_grad_products_at_scaled_params_and_directions(p_scale, v_scale):
    """The finite-difference product of a linear gradient is ``A v`` whatever the sizes of ``params`` and ``v``."""
    A = np.diag([1.0, 2.0, 3.0]) + 0.1
    v = np.array([1.0, -1.0, 0.5]) * v_scale
    op = hessian.from_grad(lambda x: A @ x, np.array([1.0, 2.0, -1.0]) * p_scale)
    np.testing.assert_allclose(op.matvec(v), A @ v, rtol=1e-8)


def test_vector_norm_at_and_past_the_ends_of_the_range():
    """``operators.vector_norm``, the estimators' scaled norm: exact scaling, inf past the range (no OverflowError)."""
    from optkern.hessian.operators import vector_norm

    assert vector_norm(np, np.full(4, 1e200)) == pytest.approx(2e200, rel=1e-15)
    assert vector_norm(np, np.full(4, 1e-320)) == pytest.approx(2e-320, rel=1e-3)  # (subnormal entries)
    assert vector_norm(np, np.full(4, 1.7e308)) == np.inf
    assert vector_norm(np, np.zeros(3)) == 0.0
    rows = vector_norm(np, np.array([[1e200, 1e200], [0.0, 0.0], [3e-200, 4e-200]]), axis=1)
    np.testing.assert_allclose(rows, [np.sqrt(2) * 1e200, 0.0, 5e-200], rtol=1e-15)
    assert vector_norm(np, np.full(4, 1e30, np.float32)) == pytest.approx(2e30, rel=1e-6)
