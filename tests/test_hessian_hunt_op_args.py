"""Regressions from a defect hunt in the curvature estimators' arguments.

The estimators' operator argument is ``op``, but a bad one was reported as ``A`` (the name
``as_operator`` and ``cg`` use), and a 0 x 0 matrix as ``n: must be >= 1`` (an argument of
``from_hvp`` the caller never gave). ``spectral_density`` took an empty ``grid`` (its P * m
products spent on a density of no points) and flattened a 2-d one (the density came back in
another shape than its grid's).
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian

ESTIMATORS = {
    "lanczos": lambda op: hessian.lanczos(op, 3),
    "top_eigenvalues": lambda op: hessian.top_eigenvalues(op),
    "spectral_density": lambda op: hessian.spectral_density(op, steps=3),
    "trace": lambda op: hessian.trace(op, "hutch++", 9),
    "power_iteration": lambda op: hessian.power_iteration(op),
    "gradient_concentration": lambda op: hessian.gradient_concentration(op, np.ones(3), 1),
}
BAD_OPS = {
    "rectangular": (np.ones((3, 4)), ValueError),
    "empty": (np.zeros((0, 0)), ValueError),
    "complex": (np.eye(3, dtype=complex), TypeError),
    "string": ("A", TypeError),
}


@pytest.mark.parametrize("bad", BAD_OPS, ids=list(BAD_OPS))
@pytest.mark.parametrize("call", ESTIMATORS, ids=list(ESTIMATORS))
def test_a_bad_operator_is_named_op(call, bad):
    op, exc = BAD_OPS[bad]
    with pytest.raises(exc, match="^op: "):
        ESTIMATORS[call](op)


@pytest.mark.parametrize("call", ESTIMATORS, ids=list(ESTIMATORS))
def test_an_integer_matrix_is_read_as_float64_as_scipy_reads_it(call):
    # (hunt 46j: hessian.cg and as_operator take integer matrices, as SciPy's solvers do; every
    # estimator reads them through as_operator, so each gives the float64 matrix's result)
    a = np.diag([3, 1, 2])
    got, want = ESTIMATORS[call](a), ESTIMATORS[call](a.astype(np.float64))
    assert repr(got) == repr(want)


def test_cg_and_as_operator_name_their_own_argument_for_an_empty_matrix():
    with pytest.raises(ValueError, match=r"^A: expected a square matrix of at least 1 x 1, got shape \(0, 0\)"):
        hessian.cg(np.zeros((0, 0)), np.zeros(0))
    with pytest.raises(ValueError, match="^A: "):
        hessian.as_operator(np.zeros((0, 0)))


def _counting_op(n=6):
    A = np.diag(np.arange(1.0, n + 1))
    calls = []
    return hessian.from_hvp(lambda v: calls.append(1) or A @ v, n), calls


@pytest.mark.parametrize("grid", [np.zeros(0), [], np.linspace(0, 1, 6).reshape(2, 3)], ids=["empty", "list", "2d"])
def test_spectral_density_refuses_an_empty_or_2d_grid_before_any_product(grid):
    op, calls = _counting_op()
    with pytest.raises(ValueError, match=r"^grid: expected a 1-d array of at least one point"):
        hessian.spectral_density(op, steps=3, grid=grid)
    assert calls == []


def test_spectral_density_takes_a_one_point_grid():
    op, _ = _counting_op()
    d = hessian.spectral_density(op, steps=3, grid=[3.0])
    assert d.grid.shape == d.density.shape == (1,) and d.density[0] > 0


def _concentration_problem(n=12):
    a = np.random.default_rng(4).standard_normal((n, n))
    A = a + a.T
    return A, np.random.default_rng(5).standard_normal(n), hessian.top_eigenvalues(A, 3, return_eigenvectors=True)


@pytest.mark.parametrize(
    "make, what",
    [
        (lambda E: np.zeros_like(E), "column 0 is zero"),
        (lambda E: np.stack([E[:, 0], E[:, 1], 2 * E[:, 0]], axis=1), "column 2 is in the span"),
        (lambda E: np.stack([E[:, 0], E[:, 0] + 1e-12 * E[:, 1], E[:, 2]], axis=1), "column 1 is in the span"),
    ],
    ids=["zeros", "repeated", "nearly-repeated"],
)
def test_gradient_concentration_refuses_dependent_eigenvectors(make, what):
    # (QR completed them with arbitrary directions: the share of an arbitrary subspace, returned)
    A, g, top = _concentration_problem()
    with pytest.raises(ValueError, match=f"^eigenvectors: columns 0..2 must be linearly independent.*{what}"):
        hessian.gradient_concentration(A, g, 3, eigenvectors=make(top.eigenvectors))


def test_gradient_concentration_takes_scaled_or_float32_ritz_vectors():
    A, g, top = _concentration_problem()
    want = hessian.gradient_concentration(A, g, 3, eigenvectors=top.eigenvectors)
    scaled = top.eigenvectors * np.array([1e-30, 1.0, 1e30])  # (the QR re-orthonormalizes: scale-free)
    assert hessian.gradient_concentration(A, g, 3, eigenvectors=scaled) == pytest.approx(want, rel=1e-12)
    f32 = top.eigenvectors.astype(np.float32)
    assert hessian.gradient_concentration(A.astype(np.float32), g, 3, eigenvectors=f32) == pytest.approx(want, rel=1e-5)
