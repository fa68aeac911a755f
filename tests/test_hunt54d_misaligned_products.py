"""A user's product returned as a misaligned NumPy array (``np.frombuffer`` / ``np.ndarray`` over a
byte buffer at an odd offset: float64 values, as the operator declares) is read through an aligned
copy where it enters the operator, as a misaligned input vector already is. It was passed on as it
was, and the native passes refused it naming their own arguments: ``lanczos``, ``spectral_density``
"w: array data is misaligned", ``cg`` "y: array data is misaligned" -- names the caller never passed,
for a product any NumPy code takes."""

import numpy as np
import pytest

from optkern import hessian

rng = np.random.default_rng(0)
_M = rng.standard_normal((7, 7))
A = _M + _M.T
EV = np.linalg.eigvalsh(A)


def misaligned(values):
    """``values`` (float64) copied into an array at byte offset 1 of a fresh buffer."""
    buf = np.zeros(values.size * 8 + 1, np.uint8)
    out = np.ndarray(values.shape, np.float64, buffer=buf, offset=1)
    out[...] = values
    assert not out.flags.aligned
    return out


def op():
    return hessian.from_hvp(lambda v: misaligned(A @ v), 7)


ESTIMATES = {
    "lanczos_full": lambda: (hessian.lanczos(op(), 7, return_ritz=True)[2], EV),
    "lanczos_partial": lambda: (hessian.lanczos(op(), 7, reorthogonalize="partial", return_ritz=True)[2], EV),
    "lanczos_none": lambda: (hessian.lanczos(op(), 3, reorthogonalize="none")[0], hessian.lanczos(A, 3)[0]),
    "spectral_density": lambda: (
        hessian.spectral_density(op(), 2, 7, seed=3).nodes,
        hessian.spectral_density(A, 2, 7, seed=3).nodes,
    ),
    "top_eigenvalues": lambda: (hessian.top_eigenvalues(op(), 2).eigenvalues, EV[::-1][:2]),
    "power_iteration": lambda: (
        hessian.power_iteration(op(), max_iter=2000, tol=1e-12).eigenvalue,
        EV[np.argmax(np.abs(EV))],
    ),
    "trace": lambda: (hessian.trace(op(), "hutch++", 21).estimate, np.trace(A)),
    "cg": lambda: (
        hessian.cg(op(), np.ones(7), damping=100.0, rtol=1e-12).x,
        np.linalg.solve(A + 100 * np.eye(7), np.ones(7)),
    ),
}


@pytest.mark.parametrize("name", sorted(ESTIMATES))
def test_a_misaligned_product_is_read_as_its_values(name):
    got, want = ESTIMATES[name]()
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8 * np.abs(EV).max())


def test_the_product_handed_back_is_aligned_and_the_values():
    y = op().matvec(np.arange(7.0))
    assert y.flags.aligned and y.flags.c_contiguous
    np.testing.assert_array_equal(y, A @ np.arange(7.0))
