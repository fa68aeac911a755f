"""Hunt 46g: ``NewtonCG`` with a curvature callable returning a dense matrix or a SciPy sparse one
(which the constructor's docs, ``_check_operator`` and ``hessian.cg`` take) raised
``AttributeError: 'numpy.ndarray' object has no attribute 'matvec'`` from inside the step whenever CG
met negative curvature on its first iteration: the step then measures the model's curvature along
the direction with one product of its own, ``op.matvec(p)``, on the raw matrix rather than on the
operator ``cg`` had made of it. The step now takes that product from the same operator as the
solve, and its result matches a float64 NumPy reference of the step."""

import numpy as np
import pytest
import scipy.sparse as sp

from optkern import optim

N = 4


def _loss(x):
    return float(np.sum(np.log(np.cosh(x - 1.0))) + 0.1 * x @ x)


def _grad(x):
    return np.tanh(x - 1.0) + 0.2 * x


def _reference(x0, matrix, damping):
    """One Newton-CG step from x0 whose CG stops at once on negative curvature (float64 NumPy): the
    step is the first CG direction, -g, oriented downhill; the model decrease uses the undamped matrix."""
    g = _grad(x0)
    p = -g  # (r0 = -g from a cold start: p.(A + damping I) p <= 0 on the first iteration)
    q = g @ p + 0.5 * p @ matrix @ p
    rho = (_loss(x0 + p) - _loss(x0)) / q
    return x0 + p, rho


@pytest.mark.parametrize(
    "make",
    [lambda m: m, sp.csr_matrix, sp.csr_array],
    ids=["dense", "csr_matrix", "csr_array"],
)
def test_negative_curvature_at_the_first_cg_iteration_with_a_matrix(make):
    matrix = -np.eye(N)  # negative definite: CG's first curvature is negative
    x = np.full(N, 5.0)
    opt = optim.NewtonCG([x], lambda: make(matrix), damping=0.5, min_damping=1e-8, max_damping=1e8)
    x0 = x.copy()
    loss = opt.step(lambda: (_loss(x), _grad(x)))
    want, rho = _reference(x0, matrix, 0.5)
    assert loss == _loss(x0)
    assert opt.last["negative_curvature"] and opt.last["cg_iterations"] == 0
    np.testing.assert_allclose(x, want, rtol=1e-15, atol=0)
    assert opt.last["rho"] == pytest.approx(rho, rel=1e-12)
    assert opt.num_hvps == 2  # cg's product and the step's one along p
