"""Products and multiples of operators outside SciPy (CuPy vectors): ``H @ G``, ``H.dot(2.0)``.

On NumPy, curvature operators are SciPy ``LinearOperator`` objects and compose
with SciPy's own product and scaled operators; ``Composed`` gives the same
algebra to the duck-typed operators CuPy vectors use.
"""

from __future__ import annotations

import numpy as np

from .. import _backend
from .._pickling import NativeByName


def is_operator(x):
    return not (isinstance(x, np.ndarray) or _backend.is_cupy(x)) and hasattr(x, "matvec") and hasattr(x, "shape")


def ndim(x):
    """``x.ndim``, or a nested list's / tuple's as NumPy reads it (SciPy's ``A @ [1, 1, 1]`` is
    ``A @ np.asarray(...)``: one was refused, "expected a 1-D or 2-D array"); None otherwise (a ragged
    list: NumPy's unnamed "inhomogeneous shape" error)."""
    nd = getattr(x, "ndim", None)
    if nd is None and isinstance(x, (list, tuple)):
        try:
            nd = np.ndim(x)
        except ValueError:
            return None
    return nd


def check_same_vectors(A, B) -> None:
    """TypeError unless operators ``A`` and ``B`` (both declaring their ``xp``) work on one array
    module's vectors: ``H @ G`` of a NumPy and a CuPy operator was made, and its first product
    failed inside SciPy ("expected 1-d or 2-d array or matrix") or named a ``v`` never passed."""
    xa, xb = getattr(A, "xp", None), getattr(B, "xp", None)
    if xa is None or xb is None:
        return  # (an operator that names no array module: whatever vectors its matvec takes)
    na, nb = getattr(xa, "__name__", None), getattr(xb, "__name__", None)
    if na != nb:
        raise TypeError(f"cannot multiply operators on {na} and {nb} vectors (their products need one array module)")


def _matmat(op, X):
    """``op`` applied to the columns of ``X``: its ``matmat``, or its ``matvec`` column by column for an
    operator with only ``matvec`` and ``shape`` (what ``as_operator`` takes and ``is_operator``
    composes: ``G.matmat`` raised an unnamed AttributeError for ``(H @ G) @ V``)."""
    mm = getattr(op, "matmat", None)
    if mm is not None:
        return mm(X)
    xp = _backend.array_module(X)
    cols = [op.matvec(X[:, j]) for j in range(X.shape[1])]
    return xp.stack(cols, axis=1) if cols else xp.zeros((op.shape[0], 0), dtype=np.result_type(op.dtype, X.dtype))


def _rmatvec(op, x, name: str):
    """``op``'s transpose applied to ``x``: its ``rmatvec``, its ``matvec`` where it declares
    ``symmetric = True``, else a TypeError naming the operand. An operator with only ``matvec`` and
    ``shape`` composes (``matvec`` / ``matmat``), but its transpose is unknown: ``rmatvec`` raised an
    unnamed AttributeError; taking its ``matvec`` unasked would be silently wrong when it is not
    symmetric."""
    rm = getattr(op, "rmatvec", None)
    if rm is not None:
        return rm(x)
    if getattr(op, "symmetric", False) is True:
        return op.matvec(x)
    raise TypeError(
        f"rmatvec: operand {name} ({type(op).__name__}) has no rmatvec (give it one, or "
        "symmetric = True where its matvec is its own transpose)"
    )


class Composed(NativeByName):
    """``scale * A @ B`` (``B`` None: ``scale * A``) for operators outside SciPy (CuPy vectors):
    ``matvec``, ``matmat``, ``rmatvec``, ``@``, ``shape``, ``dtype``; composes further."""

    def __init__(self, A, B, scale):
        # (checked here, as CurvatureOperator._compose does: ``(H @ G) @ K`` with K of another size was
        # made, and refused only at its first product, naming a ``v`` the caller never passed)
        if B is not None and B.shape[0] != A.shape[1]:
            raise ValueError(f"cannot multiply operators of shapes {A.shape} and {B.shape}")
        if B is not None:
            check_same_vectors(A, B)
        self.A, self.B, self.scale = A, B, scale
        self.shape = (A.shape[0], (B if B is not None else A).shape[1])
        self.dtype = np.result_type(A.dtype, B.dtype) if B is not None else A.dtype
        self.xp = getattr(A, "xp", np)

    ndim = 2

    def _apply(self, f, x):
        y = x if self.B is None else f(self.B, x)
        y = f(self.A, y)
        return y if self.scale == 1.0 else y * self.scale

    def matvec(self, v):
        return self._apply(lambda op, x: op.matvec(x), v)

    def matmat(self, V):
        return self._apply(_matmat, V)

    def rmatvec(self, v):  # (A B)^T = B^T A^T
        y = _rmatvec(self.A, v, "A")
        y = y if self.B is None else _rmatvec(self.B, y, "B")
        return y if self.scale == 1.0 else y * self.scale

    def __matmul__(self, x):
        # (CurvatureOperator.__matmul__'s rule and words: a scalar or a 3-d array went to matmat, whose
        # error named a V the caller never passed)
        if is_operator(x):
            return Composed(self, x, 1.0)
        if np.isscalar(x):
            raise ValueError("x: Scalar operands are not allowed, use '*' instead")
        nd = ndim(x)
        if nd not in (1, 2):
            raise ValueError(f"x: expected a 1-D or 2-D array, got {type(x).__name__}")
        return self.matvec(x) if nd == 1 else self.matmat(x)

    def dot(self, x):
        return Composed(self, None, _backend.real("x", x)) if np.isscalar(x) else self @ x

    def __repr__(self):
        return f"<{self.shape[0]}x{self.shape[1]} composed operator dtype={self.dtype}>"
