"""Curvature operators: symmetric ``n x n`` linear maps known only through products.

A ``CurvatureOperator`` has ``shape``, ``dtype``, ``matvec``, ``matmat``,
``rmatvec`` (= ``matvec``: curvature is symmetric) and ``@``, like
``scipy.sparse.linalg.LinearOperator``. On NumPy (with SciPy importable) the
operator IS a ``LinearOperator`` subclass, so ``scipy.sparse.linalg.eigsh``
and friends take it directly; on CuPy it is a duck-typed equivalent whose
vectors stay on the device. Every estimator in ``optkern.hessian`` accepts
either.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np

from .. import _backend
from .._array_checks import float_dtype
from ._curvature_operator import CurvatureOperator as CurvatureOperator
from ._curvature_operator import _operator_class as _operator_class
from ._linear_operator import _linear_operator_base, is_scipy_sparse
from ._lockstep import lockstep_of
from ._vectors import unit_vector as unit_vector  # (re-exported: the estimators and tests import it here)
from ._vectors import vector_norm


def from_hvp(
    fn: Callable,
    n: int,
    dtype=np.float64,
    *,
    xp=np,
    matmat: Callable | None = None,
    name: str = "hvp",
    into: Callable | None = None,
) -> CurvatureOperator:
    """Operator from a user's Hessian-vector product ``fn(v) -> H v``.

    ``fn`` must be linear and symmetric in ``v`` (the Krylov estimators check: ValueError naming ``op``
    for gross asymmetry, a RuntimeWarning past ``dtype``'s rounding -- products computed in float32 want
    ``dtype=float32``: ``optkern.hessian``'s docstring); ``xp`` is the array module of its vectors.
    ``matmat(V)``, when given, is used for blocks of vectors;
    ``into(v, out)``, when given, writes ``H v`` into ``out`` (products into a
    reused buffer, see ``CurvatureOperator``). ``dtype`` is float32 or float64 (``None`` refused,
    as by ``nn.MLP``: one checker, TypeError naming ``dtype``); ``name`` a str (TypeError naming it).

    Every product is checked where it enters the operator: ``fn`` must return an
    array of ``xp`` (a torch tensor or other DLPack array is viewed as one) of
    shape ``(n,)``, ``matmat`` one of shape ``(n, k)``, of float32 or float64
    (cast to ``dtype``; integer, bool or complex products are refused), with
    finite entries. Otherwise TypeError / ValueError naming ``fn`` (``matmat``,
    ``into``), before anything is written into a caller's ``out`` (``into``
    writes its product itself: a non-finite one is refused after). Every
    estimator then raises the same error.
    """
    # (fn, matmat and into checked by the class, named as here: _curvature_operator._check_functions)
    return _operator_class(xp)(fn, n, dtype, xp, matmat, name, into, check=("fn", "matmat", "into"))


def from_grad(grad_fn: Callable, params, *, rel_step: float | None = None, name: str = "fd-grad"):
    """Operator ``v -> H v`` by central finite differences of a gradient function.

    ``H v ~ (g(p + h v) - g(p - h v)) / (2 h)`` with the step
    ``h = rel_step * (1 + ||p||) / ||v||``, i.e. the parameters move by
    ``rel_step * (1 + ||p||)`` along ``v``. The error is
    ``h^2 / 6 * D^3 g[v, v]`` (O(h^2), from the third derivative) plus rounding
    ``~ eps * ||g|| / h``; the default ``rel_step = eps^(1/3)`` of the dtype
    (6e-6 for float64, 5e-3 for float32) balances the two. Costs two gradient
    evaluations per product; not exactly symmetric (use it to check exact
    operators, or where no exact HVP exists).

    Args:
      grad_fn: ``params -> gradient`` (same shape and array module as ``params``, and at least
        their precision: float32 gradients at float64 params are refused, TypeError; integer,
        bool or complex ones too). It may return the same buffer at every call (a model's ``.grad``):
        the first gradient of a product is copied before the second is asked for.
      params: the point (1-D array) at which the Hessian is taken.
      rel_step: the relative step size (default ``eps ** (1/3)``; at least ``eps``, ValueError otherwise).
    """
    if not callable(grad_fn):
        raise TypeError(f"grad_fn: expected a callable, got {type(grad_fn).__name__}")
    params = _backend.as_array(params, "params")
    if not (isinstance(params, np.ndarray) or _backend.is_cupy(params)):
        raise TypeError(f"params: expected a numpy or cupy array, got {type(params).__name__}")
    xp = _backend.array_module(params)
    dtype = float_dtype(params.dtype, "params")
    if params.ndim != 1:
        raise ValueError(f"params: expected a 1-D array, got shape {tuple(params.shape)}")
    if params.size == 0:  # (else the operator's "n: must be >= 1", an argument from_grad has not)
        raise ValueError(f"params: expected at least one parameter, got shape {tuple(params.shape)}")
    if rel_step is None:
        rel_step = float(np.finfo(dtype).eps) ** (1.0 / 3.0)
    rel_step = _backend.positive("rel_step", rel_step)
    eps = float(np.finfo(dtype).eps)
    if rel_step < eps:
        # A step below the dtype's resolution is lost in params + h v (every entry rounds back to the
        # params' own): both gradients were taken at the params, and every product was 0 -- a zero
        # operator, top eigenvalue and trace 0, no error (rel_step=1e-20 at float64, 1e-9 at float32).
        raise ValueError(
            f"rel_step: must be at least the params' {dtype} eps {eps!r} (a smaller step is lost in the "
            f"rounding of params + h v), got {rel_step!r}"
        )
    # (scaled: NumPy's norm of finite params of 1e200 was inf, "NaN or Inf"; a byte-swapped params read
    # through a native copy: the products' params + h v are native anyway)
    norm = vector_norm(xp, params if params.dtype.isnative else params.astype(dtype))
    if not math.isfinite(norm):
        raise ValueError("params: has NaN or Inf entries")
    scale = rel_step * (1.0 + norm)
    if not math.isfinite(scale):  # (every product was NaN, refused as grad_fn's)
        raise ValueError(f"rel_step: the step {rel_step!r} * (1 + ||params||) overflows float64")

    def grad(x):
        """``grad_fn(x)``, checked: an array of the params' shape (TypeError / ValueError naming grad_fn)."""
        g = _backend.as_array(grad_fn(x), "grad_fn")
        if not (isinstance(g, np.ndarray) or _backend.is_cupy(g)):
            raise TypeError(f"grad_fn: expected it to return an array, got {type(g).__name__}")
        if tuple(g.shape) != tuple(params.shape):
            raise ValueError(f"grad_fn: returned shape {tuple(g.shape)}, expected the params' {tuple(params.shape)}")
        # (integer gradients were truncated: their differences over the small step made zero products,
        # silently; bool, string or object ones failed in the subtraction, unnamed; complex ones were
        # refused only after it. Refused here as from_hvp refuses such products.)
        if g.dtype.kind != "f":
            raise TypeError(f"grad_fn: returned {g.dtype} gradients, expected real floating-point numbers")
        # A coarser gradient than the params: its rounding over the params' dtype's small step made a
        # float64 operator's products ~1e-3 off (float32 gradients), silently, as the cast hid it.
        if g.dtype.kind == "f" and g.dtype.itemsize < dtype.itemsize:
            raise TypeError(
                f"grad_fn: returned {g.dtype} gradients at {dtype} params; finite differences need the "
                f"params' precision (return {dtype}, or pass {g.dtype} params)"
            )
        return g

    def matvec(v):
        nv = vector_norm(xp, v)  # (scaled: a v of 1e-200 had norm 0, its product zeros; of 1e200, inf: NaN)
        if nv == 0.0:
            return xp.zeros_like(v)
        h = scale / nv
        # The first gradient copied before the second is asked for: a grad_fn writing each gradient into
        # one buffer it keeps (a model's .grad, np.matmul(..., out=buf)) returned the same array twice,
        # and every product was (g - g) / 2h = 0, a zero operator, silently. (One vector per product,
        # next to two gradient evaluations.)
        gp = xp.array(grad(params + h * v), copy=True)
        gm = grad(params - h * v)
        # (a quotient past the dtype's range is inf, refused naming grad_fn: NumPy's "overflow
        # encountered in divide" escaped under -W error)
        with np.errstate(over="ignore", invalid="ignore"):
            return (gp - gm) / (2.0 * h)

    # (the products are checked like from_hvp's, named grad_fn: NaN gradients give NaN products)
    return _operator_class(xp)(matvec, params.shape[0], dtype, xp, None, name, check=("grad_fn",) * 3)


def with_progress(op, progress: Callable | None, total: int) -> CurvatureOperator:
    """``op`` reporting ``progress(done, total)`` after each product (a block of k vectors counts k).

    The estimators take ``progress=`` and pass their planned number of products as ``total``
    (an upper bound where they may stop early). ``op``: anything ``as_operator`` takes (a dense
    or sparse matrix, a SciPy ``LinearOperator``: an unnamed AttributeError before); ``total``: an
    integer >= 0 (it was passed on unchecked, whatever it was).
    """
    lock = lockstep_of(op)  # (of what was given: a SciPy composite's distributed parts, before wrapping)
    op = as_operator(op, "op")
    total = _backend.integer("total", total, lo=0)
    if progress is None:
        return op
    if not callable(progress):
        raise TypeError(f"progress: expected a callable progress(done, total), got {type(progress).__name__}")
    done = [0]

    def tick(k):
        done[0] += k
        progress(done[0], total)

    def matvec(v):
        r = op.matvec(v)
        tick(1)
        return r

    def matmat(V):
        r = op.matmat(V)
        tick(V.shape[1])
        return r

    # (unchecked: `op` checked its products already where they came from a user's function)
    out = _operator_class(op.xp)(matvec, op.shape[0], op.dtype, op.xp, matmat, op.name, check=None)
    out.trusted_symmetric = op.trusted_symmetric  # (the products are op's)
    if lock is not None:  # (a distributed op's: an estimator over the wrapper ends in step with the ranks)
        out._lockstep = lock
    return out


def _quiet(A) -> Callable:
    """``v -> A @ v`` without NumPy's floating-point warnings: an overflowing product is inf, which the
    estimators refuse naming the operator (ValueError), as from_mlp's (``_mlp_checks._ieee_quiet``);
    NumPy's "overflow encountered in matmul" was an escaping RuntimeWarning under ``-W error``."""

    def product(v):
        with np.errstate(all="ignore"):
            return A @ v

    return product


def _runs_scipy_matvec(A) -> bool:
    """Whether ``A.matvec`` is SciPy's own ``LinearOperator.matvec`` (its products from ``_matvec``)."""
    base = _linear_operator_base()
    return isinstance(A, base) and getattr(type(A), "matvec", None) is getattr(base, "matvec", None)


def _scipy_matvec(A, n: int, who: str) -> Callable:
    """SciPy's ``LinearOperator.matvec`` of ``A`` on the operator's ``(n,)`` vectors, as SciPy runs it
    (``A._matvec``, the product as an array reshaped to ``(n,)`` where it holds ``n`` entries), except
    that a product of another size is left to the operator's check, which names the argument
    (``op.matvec: returned shape (6,), expected (5,)``): SciPy's reshape raised NumPy's "cannot
    reshape array of size 6 into shape (5,)" in every estimator, naming nothing."""

    def matvec(v):
        try:
            y = A._matvec(v)
        except ValueError as e:
            # a composite (``aslinearoperator(B) + C``, ``B @ C``, ``2 * C``, ``C ** 2``) runs its parts'
            # SciPy matvec, whose reshape of a part's product of the wrong size raised NumPy's "cannot
            # reshape array of size 4 into shape (5,)" from inside SciPy, naming no argument
            base = _linear_operator_base()
            inside = any(isinstance(part, base) for part in getattr(A, "args", ()))  # (SciPy's composites)
            raise ValueError(
                f"{who}: a product inside the {type(A).__name__} failed: {e}" if inside else f"{who}: {e}"
            ) from None
        except NotImplementedError as e:  # (SciPy's bare one: a part without _matvec, or ``C.H`` without _rmatvec)
            raise TypeError(
                f"{who}: the {type(A).__name__} cannot compute its product (NotImplementedError{': ' if str(e) else ''}"
                f"{e}; an operator inside it defines neither _matvec nor _rmatvec as needed)"
            ) from None
        if _backend.is_foreign(y):  # (a torch tensor: its NumPy view, as the operator's check takes it)
            y = _backend.as_array(y, who)
        elif type(y) is not np.ndarray:
            try:
                y = np.asarray(y)  # (SciPy's: a list, a NumPy scalar; a string is refused by its dtype)
            except (TypeError, ValueError):  # (ragged)
                return y
        return y.reshape(n) if isinstance(y, np.ndarray) and y.size == n and y.shape != (n,) else y

    return matvec


def float_matrix(A):
    """A dense (NumPy / CuPy) or SciPy sparse matrix of integers or booleans as a float64 copy, as
    ``scipy.sparse.linalg.cg`` takes one (its ``make_system`` computes in float64); anything else as it
    is. ``hessian.cg(np.diag([1, 2, 3]), b)`` was refused, "A: expected a float32 or float64 matrix,
    got int64", where SciPy's ``cg`` returned the solution. (Taken once, by :func:`as_matrix`.)"""
    if isinstance(A, np.ndarray) or _backend.is_cupy(A) or is_scipy_sparse(A):
        if A.dtype.kind in "iub":
            return A.astype(np.float64)
    return A


def as_matrix(A, name: str = "A"):
    """``A`` as :func:`as_operator` reads a matrix: a torch tensor or other DLPack matrix as its view
    (a masked array refused, naming ``name``), ``np.matrix`` as its plain ndarray, an integer or
    boolean one as its float64 copy (:func:`float_matrix`); operators and other objects with
    ``matvec`` as they are. The symmetry check and the operator read this one result: each took its
    own float64 copy of an integer matrix (two n x n copies per estimator call)."""
    if isinstance(A, CurvatureOperator) or hasattr(A, "matvec"):
        return A
    if not is_scipy_sparse(A):
        A = _backend.as_array(A, name)
    if isinstance(A, np.ndarray) and type(A) is not np.ndarray:
        A = A.view(np.ndarray)  # (np.matrix: its A @ v is a (1, n) matrix, not a vector)
    return float_matrix(A)


def _matrix_recipe(A, pickling: bool) -> tuple:
    """The ``(callable, args)`` that rebuild :func:`as_operator`'s operator of the matrix ``A``
    (``_operator_pickling``'s recipe protocol; the operator's own attributes travel beside it)."""
    return as_operator, (A,)


def as_operator(A, name: str = "A") -> CurvatureOperator:
    """``A`` as a curvature operator: operators pass through; a dense symmetric
    matrix (NumPy / CuPy) or a SciPy sparse one (NumPy vectors) becomes ``v -> A @ v``;
    any object with ``shape``, ``dtype`` and ``matvec`` (e.g. a SciPy ``LinearOperator``,
    or ``H @ G`` of CuPy operators) is wrapped, on the array module its ``xp`` names (NumPy without one).
    Errors name the argument ``name``."""
    if isinstance(A, CurvatureOperator):
        return A
    sparse = is_scipy_sparse(A)
    A = as_matrix(A, name)  # (a float matrix as it is: require_symmetric's result, converted once)
    # (a SciPy sparse matrix, any format, as a dense one: scipy.sparse.linalg.cg, whose contract
    # hessian.cg follows, takes one; cg and every estimator refused it, "got csr_matrix")
    if isinstance(A, np.ndarray) or _backend.is_cupy(A) or sparse:
        if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:  # (0 x 0: "n: must be >= 1")
            raise ValueError(f"{name}: expected a square matrix of at least 1 x 1, got shape {tuple(A.shape)}")
        # (either byte order: a byte-swapped ">f8" matrix is float64 values, its products A @ v native
        # float64 -- it was refused, "expected a float32 or float64 matrix, got >f8")
        dtype = A.dtype.newbyteorder("=")
        if dtype not in (np.float32, np.float64):  # checked here so that the error names A
            raise TypeError(f"{name}: expected a float32 or float64 matrix, got {A.dtype}")
        xp = np if sparse else _backend.array_module(A)
        kind = "sparse" if sparse else "dense"
        op = _operator_class(xp)(_quiet(A), A.shape[0], dtype, xp, _quiet(A), kind, check=None)
        # pickled (and deep-copied) as its matrix, rebuilt where it is loaded: it was refused, "its matvec
        # is '_quiet.<locals>.product', a lambda or a function defined inside another", a function the
        # caller never wrote, for an operator made of nothing but a picklable matrix
        op._recipe = functools.partial(_matrix_recipe, A)
        return op
    if hasattr(A, "matvec") and hasattr(A, "shape"):
        shape = A.shape
        if not isinstance(shape, (tuple, list)) or len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"{name}: expected a square operator, got shape {shape}")
        n = _backend.integer(f"{name}: shape[0]", shape[0], lo=1)
        dtype = getattr(A, "dtype", None)
        dtype = np.float64 if dtype is None else float_dtype(dtype, f"{name}: dtype")
        # The vectors of the array module the object names (a product of CuPy operators, ``H @ G``, is a
        # ``compose.Composed`` of CuPy vectors): wrapped as a NumPy operator, its CuPy products were
        # refused ("expected it to return a numpy array") by every estimator. Else NumPy's (SciPy's).
        xp = getattr(A, "xp", np)
        xp = xp if getattr(xp, "__name__", None) in ("numpy", "cupy") else np
        matvec = _scipy_matvec(A, n, f"{name}.matvec") if _runs_scipy_matvec(A) else A.matvec
        return _operator_class(xp)(matvec, n, dtype, xp, None, "wrapped", check=(f"{name}.matvec",) * 3)
    raise TypeError(f"{name}: expected a CurvatureOperator, a square array or a LinearOperator, got {type(A).__name__}")
