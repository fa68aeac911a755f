"""Lanczos (``top_eigenvalues``, ``lanczos``, ``spectral_density``, ``gradient_concentration``), power
iteration and CG on ``H @ G`` of two curvature operators: the product is not symmetric (its
transpose is ``G @ H``), and ``top_eigenvalues`` returned 2470, 2111, 1571 for a product whose
eigenvalues are 1993, 1806, 1339, "converged". Now a ValueError naming the operator argument;
symmetric compositions (``G @ H @ G``, ``H @ H``, sums and multiples) are still taken."""

import numpy as np
import pytest

from optkern.hessian import (
    as_operator,
    cg,
    gradient_concentration,
    lanczos,
    power_iteration,
    spectral_density,
    top_eigenvalues,
)
from optkern.hessian.compose import Composed

N = 20


def _spd(seed):
    a = np.random.default_rng(seed).standard_normal((N, N))
    return a @ a.T + N * np.eye(N)


H, G = as_operator(_spd(0)), as_operator(_spd(1))

ESTIMATORS = {
    "top_eigenvalues": lambda op: top_eigenvalues(op, 3),
    "lanczos": lambda op: lanczos(op, 5),
    "spectral_density": lambda op: spectral_density(op, num_probes=1, steps=5),
    "gradient_concentration": lambda op: gradient_concentration(op, np.ones(N), 2),
    "power_iteration": lambda op: power_iteration(op),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize(
    "make",
    [lambda: H @ G, lambda: 2.0 * (H @ G), lambda: (H @ G).T, lambda: Composed(H, G, 1.0), lambda: H @ G @ H @ H],
    ids=["HG", "2HG", "HG.T", "composed", "HGHH"],
)
def test_a_non_symmetric_product_is_refused_by_name(name, make):
    with pytest.raises(ValueError, match=r"^op: a product of different operators"):
        ESTIMATORS[name](make())


def test_a_product_wrapped_by_as_operator_is_declared_symmetric():
    """Commuting factors (the same eigenvectors): the caller wraps the product, and it is taken."""
    Q = np.linalg.qr(np.random.default_rng(2).standard_normal((N, N)))[0]
    A, B = (Q * np.linspace(1.0, 2.0, N)) @ Q.T, (Q * np.linspace(0.5, 3.0, N)) @ Q.T
    for P in (as_operator(A) @ as_operator(B), Composed(as_operator(A), as_operator(B), 1.0)):
        with pytest.raises(ValueError, match=r"as_operator\(H @ G\)"):
            top_eigenvalues(P, 2)
        got = top_eigenvalues(as_operator(P), 2).eigenvalues
        np.testing.assert_allclose(got, np.sort(np.linalg.eigvalsh(A @ B))[::-1][:2], rtol=1e-9)


def test_cg_refuses_a_non_symmetric_product():
    with pytest.raises(ValueError, match=r"^A: a product of different operators"):
        cg(H @ G, np.ones(N))
    with pytest.raises(ValueError, match=r"^M: a product of different operators"):
        cg(H, np.ones(N), M=H @ G)


@pytest.mark.parametrize(
    "make, dense",
    [
        (lambda: G @ H @ G, lambda: _spd(1) @ _spd(0) @ _spd(1)),
        (lambda: H @ H, lambda: _spd(0) @ _spd(0)),
        (lambda: H + 2.0 * G, lambda: _spd(0) + 2 * _spd(1)),
        (lambda: Composed(G, Composed(H, G, 1.0), 0.5), lambda: 0.5 * _spd(1) @ _spd(0) @ _spd(1)),
    ],
    ids=["GHG", "HH", "H+2G", "composed GHG"],
)
def test_symmetric_compositions_still_taken(make, dense):
    got = top_eigenvalues(make(), 3).eigenvalues
    want = np.sort(np.linalg.eigvalsh(dense()))[::-1][:3]
    np.testing.assert_allclose(np.sort(got)[::-1], want, rtol=1e-8)
