"""SciPy ``LinearOperator`` compatibility of curvature operators: the base class (SciPy's, or a
stand-in without SciPy) and the protocol a ``CurvatureOperator`` shares with it (SciPy's private
hooks, ``T`` / ``H``, ``@``, ``dot`` and operator products), symmetric throughout."""

from __future__ import annotations

import sys

import numpy as np

from .. import _backend
from .compose import Composed as _Composed
from .compose import check_same_vectors as _check_same_vectors
from .compose import is_operator as _is_operator
from .compose import ndim as _ndim

_SCIPY = None


def _linear_operator_base():
    """scipy.sparse.linalg.LinearOperator, or a dummy class when SciPy is missing."""
    global _SCIPY
    if _SCIPY is None:
        try:
            from scipy.sparse.linalg import LinearOperator

            _SCIPY = LinearOperator
        except ImportError:  # pragma: no cover - scipy is a test dependency
            _SCIPY = type("NoScipy", (), {})
    return _SCIPY


def is_scipy_sparse(A) -> bool:
    """Whether ``A`` is a SciPy sparse matrix or array (SciPy not imported for it: a sparse ``A`` has
    imported ``scipy.sparse`` already)."""
    mod = sys.modules.get("scipy.sparse")
    return mod is not None and bool(mod.issparse(A))


class LinearOperatorProtocol:
    """The ``LinearOperator`` methods of :class:`~optkern.hessian.operators.CurvatureOperator`,
    in terms of its ``matvec`` / ``matmat`` (uses ``shape``)."""

    # LinearOperator's private hooks, for SciPy code paths that call them.
    def _matvec(self, v):
        return self.matvec(v)

    def _matmat(self, V):
        return self.matmat(V)

    def _rmatvec(self, v):
        return self.matvec(v)

    def _adjoint(self):
        return self

    def _transpose(self):
        return self

    @property
    def T(self):
        return self

    @property
    def H(self):
        return self

    def __matmul__(self, x):
        if _is_operator(x):
            return self._compose(x)
        if np.isscalar(x):  # (SciPy's rule and words, naming the operand)
            raise ValueError("x: Scalar operands are not allowed, use '*' instead")
        x_nd = _ndim(x)
        if x_nd == 1 or (x_nd == 2 and np.shape(x)[1] == 1):
            return self.matvec(x)
        if x_nd == 2:
            return self.matmat(x)
        raise ValueError(f"x: expected a 1-D or 2-D array, got {type(x).__name__}")

    def __rmatmul__(self, x):
        # ``x @ self``. Python asks this first where self's class subclasses x's: a SciPy (NumPy-vector)
        # operator right of a CuPy one, whose product SciPy's __rmatmul__ read as an object array
        # ("expected 1-d or 2-d array or matrix, got array(<... CurvatureOperator ...>)")
        if _is_operator(x):
            _check_same_vectors(x, self)
            return _Composed(x, self, 1.0)
        base = getattr(super(), "__rmatmul__", None)
        return NotImplemented if base is None else base(x)

    def dot(self, x):
        """``A x`` for a vector or matrix, ``A B`` (an operator) for an operator ``B``, ``a A`` for a scalar."""
        if np.isscalar(x):  # a real multiple: a string or complex would make an operator of that dtype
            _backend.real("x", x)
        if np.isscalar(x) and isinstance(self, _linear_operator_base()):
            return _linear_operator_base().dot(self, x)
        if np.isscalar(x):
            return _Composed(self, None, float(x))
        return self @ x

    def _compose(self, other):
        """The product operator ``self @ other`` (SciPy's product operator when both are SciPy ones)."""
        if other.shape[0] != self.shape[1]:
            raise ValueError(f"cannot multiply operators of shapes {self.shape} and {other.shape}")
        _check_same_vectors(self, other)
        base = _linear_operator_base()
        if isinstance(self, base) and isinstance(other, base):
            return base.dot(self, other)
        return _Composed(self, other, 1.0)
