"""Hunt in the curvature estimators (optkern.hessian): argument checks before any product, and the
estimates against float64 references on small explicit matrices (sizes 1 and 7).

Defect fixed here: Hutchinson / Hutch++ traces summed the probes' products z_i (A z)_i, the samples
and the diagonals plainly in float64, and took Hutch++'s QR of the sketch as it came, so an operator
whose trace and samples are in float64's range but whose partial sums pass 1.8e308 (1e306 A: trace
1.25e307; 1.5e308 diag(1, 1, -1, -1, 1/2)) raised ValueError "op: the operator's products are not
finite", the products being finite. Those sums are now taken again scaled by a power of two where
they overflowed, and the QR of the sketch scaled where its Q was not finite (trace._column_dots,
_mean, _diagonal_sum, _sketch_basis); a sum in range keeps its bits."""

import math

import numpy as np
import pytest

from optkern import hessian as H
from optkern.hessian._probes import rademacher

RNG = np.random.default_rng(36)


def _sym(n, evals):
    Q, _ = np.linalg.qr(np.random.default_rng(n).standard_normal((n, n)))
    A = (Q * np.asarray(evals, float)) @ Q.T
    return (A + A.T) / 2


A7 = _sym(7, [-3.0, -1, 0.5, 1, 2, 4, 9])
A1 = np.array([[-2.5]])


# ---- the defect: sums past float64's range of products within it --------------------------------


@pytest.mark.parametrize("c", [1e306, 3e306])
def test_hutchinson_of_a_huge_operator_whose_samples_are_in_range(c):
    r, r0 = H.trace(A7 * c, num_matvecs=20, seed=3), H.trace(A7, num_matvecs=20, seed=3)
    assert math.isfinite(r.estimate)
    assert abs(r.estimate / c - r0.estimate) <= 8 * np.finfo(float).eps * abs(r0.estimate)
    assert abs(r.stderr / c - r0.stderr) <= 1e-12 * r0.stderr
    np.testing.assert_allclose(r.samples / c, r0.samples, rtol=1e-14)


@pytest.mark.parametrize(
    ("method", "m", "c"),
    [
        ("hutchinson", 3, 1.5e308),
        ("hutchinson", 30, 1.5e308),
        ("hutch++", 3, 1.5e308),
        ("hutch++", 6, 2.0**1021),
        ("hutch++", 30, 1.5e308),
    ],
)
def test_trace_whose_partial_sums_overflow_but_not_the_trace(method, m, c):
    """c diag(1, 1, -1, -1, 1/2): the trace is c/2, a Hutchinson sample z^T A z is c/2 exactly
    (z_i^2 = 1); the column sums passed inf first (inf - inf: NaN), Hutch++'s QR of the sketch
    overflowed (Q NaN) and its projected probes' z_i (A z)_i too. Now: c times the estimate of
    diag(1, 1, -1, -1, 1/2) with the same probes (Hutch++ exact at m >= 3 n = 15)."""
    d = np.array([1.0, 1, -1, -1, 0.5])
    r, r1 = H.trace(np.diag(c * d), method, num_matvecs=m, seed=1), H.trace(np.diag(d), method, num_matvecs=m, seed=1)
    assert abs(r.estimate / c - r1.estimate) <= 1e-13 * np.abs(d).sum()
    if math.isinf(r1.stderr):  # (one sample)
        assert math.isinf(r.stderr)
    else:
        assert abs(r.stderr / c - r1.stderr) <= 1e-13 * np.abs(d).sum()
    if method == "hutchinson":
        np.testing.assert_array_equal(r.samples, c / 2)
        assert r.estimate == pytest.approx(c / 2, rel=4 * np.finfo(float).eps)
    if m == 30 and method == "hutch++":
        assert r.estimate == c / 2 and r1.estimate == 0.5


def test_a_trace_past_float64_still_raises_naming_op():
    with pytest.raises(ValueError, match="^op: "):
        H.trace(np.diag([1.5e308, 1.5e308, 1.0]), num_matvecs=4)


def test_sums_in_range_keep_their_bits():
    r = H.trace(A7, num_matvecs=40, seed=2)
    Z = np.stack([rademacher(7, seed=2, index=i, dtype=np.float64, xp=np) for i in range(40)], 1)
    want = (Z * (A7 @ Z)).sum(axis=0, dtype=np.float64)
    np.testing.assert_array_equal(r.samples, want)
    assert r.estimate == float(want.mean())


# ---- argument checks and float64 references (sizes 1 and 7): no defect found, kept as regression ----


@pytest.mark.parametrize("A", [A1, A7], ids=["n1", "n7"])
def test_eigensolvers_against_eigvalsh(A):
    w = np.linalg.eigvalsh(A)
    k = min(2, len(w))
    tol = 1e-12 * np.abs(w).max()
    np.testing.assert_allclose(H.top_eigenvalues(A, k, "LA").eigenvalues, w[::-1][:k], rtol=0, atol=tol)
    np.testing.assert_allclose(H.top_eigenvalues(A, k, "SA").eigenvalues, w[:k], rtol=0, atol=tol)
    assert H.top_eigenvalues(A, 1, "LM").eigenvalues[0] == pytest.approx(w[np.argmax(np.abs(w))], abs=tol)
    alpha, beta = H.lanczos(A, len(w))
    T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    np.testing.assert_allclose(np.linalg.eigvalsh(T), w, rtol=0, atol=tol)
    assert H.power_iteration(A, max_iter=5000, tol=1e-13).eigenvalue == pytest.approx(w[np.argmax(np.abs(w))], rel=1e-9)


@pytest.mark.parametrize("A", [A1, A7], ids=["n1", "n7"])
def test_traces_against_the_exact_trace(A):
    t, n = float(np.trace(A)), A.shape[0]
    assert H.trace(A, "hutch++", num_matvecs=3 * n).estimate == pytest.approx(t, rel=1e-13)
    # Hutchinson is unbiased: 400 independent estimates' mean within 4 standard errors of the trace
    est = np.array([H.trace(A, num_matvecs=8, seed=s).estimate for s in range(400)])
    assert abs(est.mean() - t) <= 4 * est.std() / np.sqrt(len(est)) + 1e-12 * abs(t)


@pytest.mark.parametrize("A", [A1, A7], ids=["n1", "n7"])
@pytest.mark.parametrize("reorth", ["full", "partial", "none"])
def test_slq_density_weights_and_integral(A, reorth):
    sd = H.spectral_density(A, num_probes=3, steps=A.shape[0] + 2, reorthogonalize=reorth)
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, rtol=1e-12)
    w = np.linalg.eigvalsh(A)
    assert sd.nodes.min() >= w[0] - 1e-12 * np.abs(w).max() and sd.nodes.max() <= w[-1] + 1e-12 * np.abs(w).max()
    # the grid spans the nodes plus pad * range + 3 sigma: the Gaussians' tails past 3 sigma are cut
    assert 0.997 <= np.trapezoid(sd.density, sd.grid) <= 1.0 + 1e-9


@pytest.mark.parametrize(
    ("kw", "exc", "name"),
    [
        ({"num_matvecs": 0}, ValueError, "num_matvecs"),
        ({"num_matvecs": True}, TypeError, "num_matvecs"),
        ({"num_matvecs": 2.0}, TypeError, "num_matvecs"),
        ({"num_matvecs": 2**40}, ValueError, "num_matvecs"),
        ({"seed": 1.0}, TypeError, "seed"),
        ({"seed": -1}, ValueError, "seed"),
        ({"method": "hutch"}, ValueError, "method"),
    ],
)
def test_trace_arguments_named_before_any_product(kw, exc, name):
    calls = []
    op = H.from_hvp(lambda v: calls.append(1) or A7 @ v, 7)
    with pytest.raises(exc, match=f"^{name}: "):
        H.trace(op, **kw)
    assert not calls


@pytest.mark.parametrize(
    ("ret", "exc"),
    [
        (lambda v: None, TypeError),
        (lambda v: np.ones(6), ValueError),
        (lambda v: (A7 @ v).astype(np.int64), TypeError),
        (lambda v: A7 @ v * np.nan, ValueError),
        (lambda v: (A7 @ v)[:, None], ValueError),
    ],
)
def test_a_bad_hvp_is_named_by_every_estimator(ret, exc):
    op = H.from_hvp(ret, 7)
    for call in (
        lambda: H.trace(op, num_matvecs=3),
        lambda: H.lanczos(op, 3),
        lambda: H.top_eigenvalues(op, 1),
        lambda: H.power_iteration(op),
        lambda: H.spectral_density(op, steps=3, grid=8),
        lambda: H.gradient_concentration(op, np.ones(7), 1),
    ):
        with pytest.raises(exc, match="^fn: "):
            call()


@pytest.mark.parametrize("v0", [np.full(7, np.nan), np.zeros(7), np.ones(6), np.ones(7, complex)])
def test_bad_start_vectors_named(v0):
    for f in (H.lanczos, H.top_eigenvalues):
        with pytest.raises((TypeError, ValueError), match="^v0: "):
            f(A7, 2, v0=v0)
    with pytest.raises((TypeError, ValueError), match="^v0: "):
        H.power_iteration(A7, v0=v0)


# ---- power_iteration: converged only at an eigenvector (the lead's pass) ----------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_power_iteration_with_plus_minus_dominant_eigenvalues_is_not_converged(dtype, seed):
    """diag(5, -5, 1): the iterate alternates between two vectors whose Rayleigh quotient is the same
    non-eigenvalue (-3.45 from seed 0); it was returned with converged=True."""
    r = H.power_iteration(np.diag([5.0, -5.0, 1.0]).astype(dtype), max_iter=300, seed=seed)
    assert not r.converged


def test_power_iteration_on_a_subnormal_operator_converges_to_its_eigenvalue():
    """diag(1, 2, -3) * 1e-320 stopped after two products at -2.485e-320, "converged"."""
    r = H.power_iteration(np.diag([1.0, 2.0, -3.0]) * 1e-320, max_iter=500)
    assert r.converged and r.eigenvalue == pytest.approx(-3e-320, rel=1e-3)


@pytest.mark.parametrize("second", [4.9, -4.9, 2.0, 0.0])
def test_power_iteration_converged_means_a_small_residual(second):
    A = np.diag([5.0, second, 1.0, 0.5, 0.25, 0.1, 0.05])
    r = H.power_iteration(A, max_iter=5000)
    assert r.converged and r.eigenvalue == pytest.approx(5.0, rel=1e-4)
    v = np.asarray(r.eigenvector)
    assert np.linalg.norm(A @ v - r.eigenvalue * v) <= 1e-3 * 5.0
