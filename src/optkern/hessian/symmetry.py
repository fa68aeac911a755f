"""Which composed operators are not symmetric, for the estimators that need a symmetric one (Lanczos,
power iteration, CG).

``H @ G`` of two curvature operators is a SciPy product operator (NumPy) or a ``compose.Composed``
(CuPy): its transpose is ``G @ H``, another operator unless the two commute. ``as_operator`` wraps any
object with ``matvec`` as it is, so ``top_eigenvalues(H @ G, 3)`` ran Lanczos on it and returned
numbers that are no eigenvalues of ``H G`` (2470, 2111, 1571 against 1993, 1806, 1339 for two random
20 x 20 SPD matrices), "converged". A product is symmetric when its factors, read outside in, are
the same symmetric operators (``A @ A``, ``G @ H @ G``); scalars, transposes and powers keep what
they wrap. A sum is symmetric when each of its non-symmetric products comes with its transpose at the
same weight (``H @ G + G @ H``); one that does not (``H @ G + 0.1 I``, ``H @ G - G @ H``) is not, nor
is a power of a non-symmetric operator (``(H @ G) ** 2``): such sums and powers were taken as
symmetric, and Lanczos returned 11.98 for ``H @ G + 0.1 I`` whose top eigenvalue is 11.18, "converged".
A product holding sums is judged as the sum it multiplies out to (``(H @ G + H) @ G``: ``H G G + H G``,
not symmetric; ``(H + G) @ (H + G)``: symmetric), where that stays under ``_MAX_TERMS`` terms.
Operators this cannot see into (a user's ``LinearOperator``) stay taken as symmetric, as before, and
so does a product wrapped by ``as_operator`` (a curvature operator, symmetric by contract): the
caller's word that its factors commute. The Krylov estimators then check that word on the products
they make anyway (``_products.CouplingCheck``)."""

from __future__ import annotations

import math

import numpy as np

from .. import _backend
from ._linear_operator import is_scipy_sparse
from .compose import Composed
from .operators import CurvatureOperator, as_matrix

#: SciPy's operator algebra (scipy.sparse.linalg._interface), by class name: private classes
_TRANSPOSED = ("_TransposedLinearOperator", "_AdjointLinearOperator")
#: A power whose factors would list more than this many is kept whole (``H ** 10**6``)
_MAX_FACTORS = 64
#: A product of sums multiplied out into more terms than this is judged by its factors instead
_MAX_TERMS = 256
#: The side of the square tiles a dense matrix is compared with its transpose in
_TILE = 256


def _product(A) -> tuple:
    """``A`` as ``(c, [F1, ..., Fk])`` with ``A = c F1 ... Fk``: products, scalars, powers and
    transposes of products of symmetric operators taken apart (``[]``: the identity, a 0th power);
    anything else is one factor, itself."""
    name = type(A).__name__
    if isinstance(A, Composed):
        c, fs = _product(A.A)
        if A.B is not None:
            d, gs = _product(A.B)
            c, fs = c * d, fs + gs
        return c * A.scale, fs
    if name == "_ProductLinearOperator":
        (c, fs), (d, gs) = (_product(a) for a in A.args)
        return c * d, fs + gs
    if name == "_ScaledLinearOperator":
        c, fs = _product(A.args[0])
        return c * A.args[1], fs
    if name == "_PowerLinearOperator":
        p = int(A.args[1])
        c, fs = _product(A.args[0])
        if p == 0:
            return 1.0, []
        if len(fs) * p > _MAX_FACTORS:  # (one factor, as symmetric as what it raises: _symmetric)
            return 1.0, [A]
        try:
            return c**p, fs * p
        except OverflowError:  # (a Python float's power: its weight is only compared, see _sum_symmetric)
            return math.inf, fs * p
    if name in _TRANSPOSED:
        c, fs = _product(A.args[0])
        # (A B)^T = B^T A^T = B A for symmetric A, B; a transposed sum stays whole (its products differ)
        if all(_symmetric(f) is True for f in fs):
            return c, fs[::-1]
    return 1.0, [A]


def _terms(A, c, out: list, transposed: bool = False) -> list:
    """``A`` (times ``c``; ``transposed``: its transpose) as the terms ``(weight, factors)`` of
    :func:`_product` that it sums (``X + X.T`` of a sum ``X``: each product with its transpose)."""
    name = type(A).__name__
    if name == "_SumLinearOperator":
        for a in A.args:
            _terms(a, c, out, transposed)
        return out
    if name in _TRANSPOSED:
        return _terms(A.args[0], c, out, not transposed)
    d, fs = _product(A)
    if len(fs) == 1 and fs[0] is not A:  # (a multiple of a sum or of a transposed one)
        return _terms(fs[0], c * d, out, transposed)
    out.append((c * d, fs[::-1] if transposed else fs))
    return out


def _expanded(c, fs: list) -> list | None:
    """``c F1 ... Fk`` multiplied out over the factors that are sums: the terms ``(weight, factors)``
    of products of factors that are no sums (``(H + G) @ (H + G)``: ``H H + H G + G H + G G``), or
    None past ``_MAX_TERMS``. A sum inside a product was one factor of unknown symmetry: ``(H @ G + H)
    @ G`` (``H G G + H G``, not symmetric) was taken, ``(H + G) @ (H + G)`` (symmetric, its factors
    equal but two objects) refused."""
    out: list = [(c, [])]
    for f in fs:
        parts = _terms(f, 1.0, [])
        if len(parts) == 1 and len(parts[0][1]) == 1 and parts[0][1][0] is f:  # (no sum: itself)
            out = [(w * parts[0][0], g + [f]) for w, g in out]
            continue
        sub: list = []
        for w, g in parts:  # (a term's factors may hold sums again: (H + G) @ H inside a sum)
            e = _expanded(w, g)
            if e is None:
                return None
            sub += e
        if len(out) * len(sub) > _MAX_TERMS:
            return None
        out = [(w * v, g + h) for w, g in out for v, h in sub]
    return out


def _sum_symmetric(A) -> bool | None:
    """A sum: symmetric where its terms that are not pair up with their transposes at equal weights
    (to rounding: ``0.1 * 3`` and ``0.3``); not where one does not, or one is a power or product
    of something not symmetric, which cannot pair up (None where a term's symmetry is unknown).
    Products of sums in it are multiplied out (:func:`_expanded`) where that stays small."""
    terms: list = []
    for w, fs in _terms(A, 1.0, []):
        terms += _expanded(w, fs) or [(w, fs)]
    return _terms_symmetric(terms)


def _terms_symmetric(terms: list) -> bool | None:
    """:func:`_sum_symmetric`'s rule on the sum of ``terms`` (``(weight, factors)``)."""
    weights: dict = {}
    unknown = False
    for w, fs in terms:
        kind = _of_factors(fs)
        if kind is False:
            if not all(_symmetric(f) is True for f in fs):
                return False
            key = tuple(map(id, fs))
            weights[key] = weights.get(key, 0.0) + w
        unknown = unknown or kind is None
    for key, w in weights.items():
        t = weights.get(key[::-1], 0.0)
        # (equal, or finite and equal to rounding: an overflowed weight, inf, pairs only with its equal)
        if w != t and not (np.isfinite(w) and np.isfinite(t) and abs(w - t) <= 1e-12 * max(abs(w), abs(t))):
            return False
    return None if unknown else True


def _of_factors(fs: list) -> bool | None:
    """The symmetry of the product of ``fs``: symmetric factors read alike outside in are; symmetric
    ones that are not, are not; a factor that is not symmetric (a sum, a transposed sum) makes a
    product read alike outside in not symmetric (``G X G``, ``X X``); None where that is unknown."""
    if len(fs) == 1:
        return _symmetric(fs[0])
    kinds = [_symmetric(f) for f in fs]
    alike = all(f is g for f, g in zip(fs, reversed(fs)))
    if all(k is True for k in kinds):
        return alike
    return False if alike and False in kinds else None


def _symmetric(A) -> bool | None:
    """True: symmetric by construction; False: not (in general); None: unknown."""
    if isinstance(A, CurvatureOperator):
        return True
    name = type(A).__name__
    if name == "_SumLinearOperator":
        return _sum_symmetric(A)
    c, fs = _product(A)
    if len(fs) == 1 and fs[0] is A:  # (not taken apart: a transposed sum or a power is as symmetric as
        # what it wraps -- a power of an operator that is not symmetric is not --; others unknown)
        return _symmetric(A.args[0]) if name in _TRANSPOSED or name == "_PowerLinearOperator" else None
    terms = _expanded(c, fs) if len(fs) > 1 else None
    if terms is not None and not (len(terms) == 1 and _same(terms[0][1], fs)):
        return _terms_symmetric(terms)  # (a product holding sums: as the sum it multiplies out to)
    return _of_factors(fs) if fs else True


def _same(fs: list, gs: list) -> bool:
    """Whether two factor lists hold the same objects in the same order."""
    return len(fs) == len(gs) and all(f is g for f, g in zip(fs, gs))


def _dense_asymmetry(A) -> tuple[float, float] | None:
    """``(max |A - A^T| / max |A|, sqrt(eps))`` of a dense square float32 / float64 matrix (NumPy,
    CuPy, as :func:`operators.as_matrix` reads it; a SciPy sparse one: :func:`_sparse_asymmetry`),
    compared in square tiles; None for anything else (as_operator refuses what it cannot take, naming it), or
    where NaN / Inf entries (refused by the estimators, naming the operator) or an overflow leave it
    undefined."""
    if hasattr(A, "matvec"):
        return None
    if is_scipy_sparse(A):
        return _sparse_asymmetry(A)
    if not (isinstance(A, np.ndarray) or _backend.is_cupy(A)):
        return None
    if (
        A.ndim != 2
        or A.shape[0] != A.shape[1]
        or A.size == 0
        or A.dtype.newbyteorder("=") not in (np.float32, np.float64)
    ):
        return None
    n, t = A.shape[0], _TILE
    xp = _backend.array_module(A)
    with np.errstate(all="ignore"):
        big = max(float(A.max()), -float(A.min()))
        # tile (i, j) against tile (j, i) transposed, j >= i: both read row by row (comparing whole rows
        # with columns read A column-wise, 3-14x a product at n = 2000-4000); one sync at the end
        diff = xp.zeros((), dtype=A.dtype.newbyteorder("="))
        for i in range(0, n, t):
            for j in range(i, n, t):
                diff = xp.maximum(diff, abs(A[i : i + t, j : j + t] - A[j : j + t, i : i + t].T).max())
        diff = float(diff)
    if not (math.isfinite(big) and math.isfinite(diff)):
        return None
    return (diff / big if big else 0.0), math.sqrt(float(np.finfo(A.dtype).eps))


def _sparse_asymmetry(A) -> tuple[float, float] | None:
    """:func:`_dense_asymmetry` of a SciPy sparse matrix (any format: compared through CSR, whose
    ``data`` holds the stored entries): None where ``as_operator`` refuses it, naming it, or where NaN /
    Inf entries leave the measure undefined."""
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        return None
    if A.dtype.newbyteorder("=") not in (np.float32, np.float64):
        return None
    with np.errstate(all="ignore"):
        data = A.tocsr().data
        big = float(np.abs(data).max()) if data.size else 0.0
        diff_data = (A - A.T).tocsr().data
        diff = float(np.abs(diff_data).max()) if diff_data.size else 0.0
    if not (math.isfinite(big) and math.isfinite(diff)):
        return None
    return (diff / big if big else 0.0), math.sqrt(float(np.finfo(A.dtype).eps))


def require_symmetric(A, name: str, what: str):
    """``A`` as the estimators read it (:func:`operators.as_matrix`: an integer matrix's float64
    copy, taken once, to be passed on to ``as_operator``); ValueError naming ``name`` where ``A`` is a
    product of operators that is not symmetric (alone,
    or in a sum or power), or a dense matrix that is not symmetric to its dtype's ``sqrt(eps)``
    relative: as an operator ``v -> A v`` it gave the estimators no error and wrong numbers
    (``top_eigenvalues`` of ``[[1, 5], [0, 2]]``: 3.02, "converged"; ``cg``: 6e7 after 20 iterations).
    Rounding (``Q diag(w) Q^T`` formed in float32: 1e-7 relative) stays far below the bound."""
    A = as_matrix(A, name)  # (errors as as_operator's: it runs first, on the same argument)
    off, bound = _dense_asymmetry(A) or (0.0, 0.0)
    if off > bound:
        kind = "sparse" if is_scipy_sparse(A) else "dense"
        raise ValueError(
            f"{name}: a {kind} matrix that is not symmetric (max |A - A^T| = {off:.3g} max |A|); {what} "
            "needs a symmetric matrix (symmetrize it: (A + A.T) / 2)"
        )
    with np.errstate(all="ignore"):  # (NumPy scalar weights: an overflow is inf, compared as such)
        symmetric = _symmetric(A)
    if symmetric is False:
        raise ValueError(
            f"{name}: a product of different operators (H @ G), which is not symmetric (its transpose is "
            f"G @ H), alone or in a sum or power that does not pair it with its transpose; {what} needs a "
            "symmetric operator: a symmetric product (G @ H @ G, H @ H), or, where "
            "the factors commute, hessian.as_operator(H @ G)"
        )
    return A
