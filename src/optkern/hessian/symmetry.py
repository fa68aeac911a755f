"""Which composed operators are not symmetric, for the estimators that need a symmetric one (Lanczos,
power iteration, CG).

``H @ G`` of two curvature operators is a SciPy product operator (NumPy) or a ``compose.Composed``
(CuPy): its transpose is ``G @ H``, another operator unless the two commute. ``as_operator`` wraps any
object with ``matvec`` as it is, so ``top_eigenvalues(H @ G, 3)`` ran Lanczos on it and returned
numbers that are no eigenvalues of ``H G`` (2470, 2111, 1571 against 1993, 1806, 1339 for two random
20 x 20 SPD matrices), "converged". A product is symmetric when its factors, read outside in, are
the same symmetric operators (``A @ A``, ``G @ H @ G``); scalars, transposes and powers keep what
they wrap; sums of symmetric operators are symmetric. Operators this cannot see into (a user's
``LinearOperator``) stay taken as symmetric, as before, and so does a product wrapped by
``as_operator`` (a curvature operator, symmetric by contract): the caller's word that its factors
commute."""

from __future__ import annotations

from .compose import Composed
from .operators import CurvatureOperator

#: SciPy's operator algebra (scipy.sparse.linalg._interface), by class name: private classes
_SCALED = ("_ScaledLinearOperator", "_TransposedLinearOperator", "_AdjointLinearOperator")


def _factors(A) -> list | None:
    """``A`` as the operators it multiplies, left to right (scalars dropped); None when ``A`` is no
    product."""
    name = type(A).__name__
    if isinstance(A, Composed):
        if A.B is None:
            return _factors(A.A) or [A.A]
        return (_factors(A.A) or [A.A]) + (_factors(A.B) or [A.B])
    if name == "_ProductLinearOperator":
        a, b = A.args
        return (_factors(a) or [a]) + (_factors(b) or [b])
    if name == "_ScaledLinearOperator":
        return _factors(A.args[0])
    return None


def _symmetric(A) -> bool | None:
    """True: symmetric by construction; False: a product that is not (in general); None: unknown."""
    if isinstance(A, CurvatureOperator):
        return True
    name = type(A).__name__
    if name in _SCALED or name == "_PowerLinearOperator":
        inner = _symmetric(A.args[0])
        return None if name == "_PowerLinearOperator" and inner is False else inner
    if name == "_SumLinearOperator":
        return True if all(_symmetric(a) is True for a in A.args) else None
    fs = _factors(A)
    if fs is None:
        return None
    kinds = [_symmetric(f) for f in fs]
    if any(k is not True for k in kinds):
        return None
    return all(f is g for f, g in zip(fs, reversed(fs)))


def require_symmetric(A, name: str, what: str) -> None:
    """ValueError naming ``name`` where ``A`` is a product of operators that is not symmetric."""
    if _symmetric(A) is False:
        raise ValueError(
            f"{name}: a product of different operators (H @ G), which is not symmetric (its transpose is "
            f"G @ H); {what} needs a symmetric operator: a symmetric product (G @ H @ G, H @ H), or, where "
            "the factors commute, hessian.as_operator(H @ G)"
        )
