"""Bool arrays where the curvature routines take vectors of numbers (hunt 51d): ``precond_diag``,
``x0``, ``b``, ``v0``, ``grad``, NewtonCG's ``preconditioner``, an operator's ``v`` / ``V`` and a
density's ``t`` / ``grid`` took a mask as 0 / 1 (a start vector of ones, a preconditioner of ones:
a boolean passed by mistake ran silently). A bool is not a number to these checks, as a bool scalar
is refused where a real is expected and ``gradient_concentration`` refuses bool ``eigenvectors``:
TypeError naming the argument, before anything is computed. Integer arrays stay accepted (exact
numbers; SciPy's ``cg`` and ``eigsh`` take them): checked equal to their float64 values."""

import numpy as np
import pytest

from optkern import hessian as H
from optkern import optim

N = 7
A = np.diag(np.arange(1.0, N + 1))


def _op(a=A):
    """A counting user operator of the diagonal ``a`` (also the masked-vector tests')."""
    count = [0]

    def hvp(v):
        count[0] += 1
        return a @ v

    return H.from_hvp(hvp, a.shape[0], dtype=np.float64), count


MASK = np.array([True, False, True, True, False, True, True])
ONES = np.ones(N, dtype=bool)

CALLS = {
    "precond_diag": lambda op, v: H.cg(op, np.ones(N), precond_diag=v),
    "x0": lambda op, v: H.cg(op, np.ones(N), v),
    "b": lambda op, v: H.cg(op, v),
    "v0": lambda op, v: H.power_iteration(op, v0=v),
    "v0 ": lambda op, v: H.top_eigenvalues(op, k=1, v0=v),
    "v0  ": lambda op, v: H.lanczos(op, steps=3, v0=v),
    "grad": lambda op, v: H.gradient_concentration(op, v, 1),
    "v": lambda op, v: op.matvec(v),
    "V": lambda op, v: op.matmat(np.stack([v, v], axis=1)),
}


@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize("v", [ONES, MASK], ids=["ones", "mask"])
def test_bool_vectors_are_refused_naming_the_argument(name, v):
    op, count = _op()
    with pytest.raises(TypeError, match=rf"^{name.strip()}: expected real numbers, got an array of dtype bool"):
        CALLS[name](op, v)
    assert count[0] == 0  # (refused before any product)


@pytest.mark.parametrize("name", ["precond_diag", "x0", "b", "v0", "v"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_integer_vectors_read_as_their_values(name, dtype):
    v = np.arange(1, N + 1).astype(dtype)
    got = CALLS[name](_op()[0], v)
    want = CALLS[name](_op()[0], v.astype(np.float64))
    if isinstance(got, np.ndarray):
        np.testing.assert_array_equal(got, want)
    elif hasattr(got, "x"):
        np.testing.assert_array_equal(got.x, want.x)
    else:
        assert got.eigenvalue == want.eigenvalue


def test_density_grid_and_cdf_points_refuse_bools():
    with pytest.raises(TypeError, match=r"^grid: expected real numbers, got an array of dtype bool"):
        H.spectral_density(A, num_probes=1, steps=3, grid=np.array([True, False, True]))
    d = H.spectral_density(A, num_probes=1, steps=3, grid=8)
    with pytest.raises(TypeError, match=r"^t: expected real numbers, got an array of dtype bool"):
        d.cdf(np.array([True, False]))


@pytest.mark.parametrize("given", ["array", "callable"])
def test_newton_cg_preconditioner_refuses_bools(given):
    p = np.zeros(N)
    op, count = _op()
    calls = [0]

    def closure():
        calls[0] += 1
        return float(0.5 * p @ A @ p - p.sum()), [A @ p - 1.0]

    if given == "array":
        with pytest.raises(TypeError, match=r"^preconditioner: expected real numbers, got an array of dtype bool"):
            optim.NewtonCG([p], op, preconditioner=ONES)
        return
    opt = optim.NewtonCG([p], op, preconditioner=lambda: ONES)
    with pytest.raises(TypeError, match=r"^preconditioner: expected real numbers, got an array of dtype bool"):
        opt.step(closure)
    assert count[0] == 0 and calls[0] == 0 and not p.any()
