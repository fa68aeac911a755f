"""``compose.Composed.rmatvec`` (``H @ G`` and ``H.dot(c)`` outside SciPy: the operators CuPy vectors
use) called each operand's ``rmatvec``: an operand with only ``shape``, ``dtype`` and ``matvec`` (what
``as_operator`` takes and ``matvec`` / ``matmat`` compose) raised an unnamed AttributeError. Now an
operand that declares ``symmetric = True`` is its own transpose (``rmatvec`` = ``matvec``); any other
is refused with a TypeError naming it."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian
from optkern.hessian.compose import Composed

A = np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]])
G = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 5.0], [3.0, 0.0, 1.0]])  # (not symmetric)
S = np.diag([2.0, 1.0, 0.5])


class _MatvecOnly:
    shape = (3, 3)
    dtype = np.float64

    def __init__(self, M):
        self.M = M

    def matvec(self, v):
        return self.M @ v


class _Symmetric(_MatvecOnly):
    symmetric = True


def test_rmatvec_of_a_symmetric_matvec_only_operand_is_its_matvec():
    H = hessian.from_hvp(lambda v: A @ v, 3)
    v = np.array([1.0, -2.0, 0.5])
    C = H @ _Symmetric(S)
    assert isinstance(C, Composed)
    np.testing.assert_allclose(C.rmatvec(v), (A @ S).T @ v, rtol=1e-15)
    np.testing.assert_allclose(C.dot(2.0).rmatvec(v), 2.0 * (A @ S).T @ v, rtol=1e-15)
    # the symmetric operand first, too, and alone times a scalar
    D = Composed(_Symmetric(S), H, 1.0)
    np.testing.assert_allclose(D.rmatvec(v), (S @ A).T @ v, rtol=1e-15)
    np.testing.assert_allclose(Composed(_Symmetric(S), None, 3.0).rmatvec(v), 3.0 * S @ v, rtol=1e-15)


@pytest.mark.parametrize("first", [False, True])
def test_rmatvec_refuses_an_operand_without_rmatvec_by_name(first):
    H = hessian.from_hvp(lambda v: A @ v, 3)
    C = Composed(_MatvecOnly(G), H, 1.0) if first else H @ _MatvecOnly(G)
    name = "A" if first else "B"
    with pytest.raises(TypeError, match=rf"^rmatvec: operand {name} \(_MatvecOnly\) has no rmatvec"):
        C.rmatvec(np.ones(3))
    # (matvec still works: only the transpose needs what the operand does not say)
    np.testing.assert_allclose(C.matvec(np.ones(3)), (G @ A if first else A @ G) @ np.ones(3), rtol=1e-15)
    with pytest.raises(TypeError, match=r"^rmatvec: operand A \(_MatvecOnly\) has no rmatvec"):
        Composed(_MatvecOnly(G), None, 2.0).rmatvec(np.ones(3))
