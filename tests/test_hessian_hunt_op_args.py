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
    "integer": (np.eye(3, dtype=int), TypeError),
    "string": ("A", TypeError),
}


@pytest.mark.parametrize("bad", BAD_OPS, ids=list(BAD_OPS))
@pytest.mark.parametrize("call", ESTIMATORS, ids=list(ESTIMATORS))
def test_a_bad_operator_is_named_op(call, bad):
    op, exc = BAD_OPS[bad]
    with pytest.raises(exc, match="^op: "):
        ESTIMATORS[call](op)


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
