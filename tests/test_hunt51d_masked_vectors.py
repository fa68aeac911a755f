"""NumPy masked arrays given as curvature vectors (hunt 51d): ``v0``, ``precond_diag``, ``b``, ``x0``,
``grad``, an operator's ``v`` and NewtonCG's ``preconditioner`` were read as their data, the masked
entries' hidden values taken as numbers (a v0 masked at its large entry ran from it). Every other
array argument refuses them (``_foreign.as_array``: the mask would be ignored); so do these now,
TypeError naming the argument before any product. A np.matrix is still its values."""

import numpy as np
import pytest

from optkern import hessian as H
from optkern import optim
from test_hunt51d_bool_vectors import _op as _counting_op

N = 5
A = np.diag(np.arange(1.0, N + 1))


def _op():
    return _counting_op(A)


MASKED = np.ma.masked_array(np.ones(N), [0, 1, 0, 0, 0])

CALLS = {
    "precond_diag": lambda op, v: H.cg(op, np.ones(N), precond_diag=v),
    "x0": lambda op, v: H.cg(op, np.ones(N), v),
    "b": lambda op, v: H.cg(op, v),
    "v0": lambda op, v: H.power_iteration(op, v0=v),
    "v0 ": lambda op, v: H.top_eigenvalues(op, k=1, v0=v),
    "grad": lambda op, v: H.gradient_concentration(op, v, 1),
    "v": lambda op, v: op.matvec(v),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_masked_vectors_are_refused_naming_the_argument(name):
    op, count = _op()
    with pytest.raises(TypeError, match=rf"^{name.strip()}: expected a numpy.ndarray, got a masked array"):
        CALLS[name](op, MASKED)
    assert count[0] == 0


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("name", ["b", "v0", "v"])
def test_a_matrix_column_reads_as_its_values(name):
    v = np.arange(1.0, N + 1)
    got, want = CALLS[name](_op()[0], np.matrix(v).T), CALLS[name](_op()[0], v)
    for a, b in ((got, want),) if isinstance(got, np.ndarray) else ((vars(got), vars(want)),):
        if isinstance(a, dict):
            for k in a:
                np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
        else:  # (an (n, 1) column in, an (n, 1) product out: SciPy's matvec shape rule)
            np.testing.assert_array_equal(np.ravel(a), b)


def test_newton_cg_refuses_a_masked_preconditioner():
    op, _ = _op()
    with pytest.raises(TypeError, match=r"^preconditioner: expected a numpy.ndarray, got a masked array"):
        optim.NewtonCG([np.zeros(N)], op, preconditioner=MASKED)
