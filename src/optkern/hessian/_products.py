"""The checks of what a user's product function returns, where it enters a ``CurvatureOperator``
(and of the dtypes and real vectors the operators take).

Every estimator (``trace``, ``lanczos``, ``top_eigenvalues``, ``spectral_density``,
``power_iteration``, ``cg``) reads the products through the operator, so one check there makes
them all agree. Unchecked, NumPy broadcast a scalar or a ``(n + 1,)`` product into wrong
numbers, cast an int64 product (already truncated by the function) or dropped the imaginary
part of a complex one, ``None`` became NaN, and each estimator failed its own way or not at
all. Now a product of the wrong kind, shape or dtype raises TypeError / ValueError naming the
function (``fn`` for ``from_hvp``), with ``from_grad``'s wording, before anything reads it; a
non-finite product raises ValueError.

Cheap enough for the tight loops of Lanczos and Hutchinson: attribute checks and one
reduction per product (the sum: any NaN or Inf entry makes it non-finite); a copy only where
one is needed (a float32 product of a float64 operator, a product that is the input itself or
misaligned), and one vector per product: the function's input is a copy of the caller's (``private``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import _backend
from .._array_checks import type_name
from ._linear_operator import is_scipy_sparse


def checked(y, who: str, op, v=None, shape: tuple | None = None):
    """``y``, what the function ``who`` returned for an operator ``op``, as an array of ``op.xp``
    of ``shape`` (default ``(n,)``) and ``op.dtype`` with finite entries. TypeError / ValueError
    naming ``who`` otherwise. ``v``: the input of the product; a product sharing its memory (an
    identity ``fn = lambda v: v``) is copied, since the recurrences overwrite products in place."""
    xp = op.xp
    n = op.shape[0]
    shape = (n,) if shape is None else shape
    y = _backend.as_array(y, who)  # a torch tensor / DLPack array: a view of the same memory
    if not (_backend.is_cupy(y) if xp is not np else isinstance(y, np.ndarray)):
        raise TypeError(f"{who}: expected it to return a {xp.__name__} array (the product), got {type_name(y)}")
    if tuple(y.shape) != tuple(shape):
        raise ValueError(f"{who}: returned shape {tuple(y.shape)}, expected {tuple(shape)}")
    # (in either byte order: a byte-swapped float64 product, ">f8", is float64 values, cast below as
    # the vectors given to the operators are; it was refused, "returned >f8 entries, expected float64")
    if y.dtype.newbyteorder("=") not in (np.float32, np.float64):
        # An integer product was truncated by the function (H v of a float v is not integer), a
        # complex one is not a real symmetric operator's: refused, not cast.
        raise TypeError(f"{who}: returned {y.dtype} entries, expected float32 or float64")
    check_finite(y, who, op)
    if y.dtype != op.dtype:
        # a new array: cannot share memory with v. A float64 product past float32's range became inf
        # here, after the check: returned by matvec, blamed on `op` by the estimators (NumPy's "overflow
        # encountered in cast" escaping under -W error): refused naming the function instead.
        with np.errstate(over="ignore"):
            y = y.astype(op.dtype)
        if y.dtype == np.float32 and not bool(xp.isfinite(y).all()):  # (only a narrowing cast can overflow)
            raise ValueError(f"{who}: returned a product with entries past {op.dtype}'s range (the operator's dtype)")
    elif (v is not None and xp.may_share_memory(y, v)) or (xp is np and not y.flags.aligned):
        # (bounds only: no exact overlap search.) A misaligned product (np.frombuffer at an odd offset)
        # copied as a misaligned input vector is (CurvatureOperator._vector): the native passes refused
        # it naming their own arguments ("w: array data is misaligned" in lanczos, "y:" in cg).
        y = y.copy()
    return y


def private(xp, v, given):
    """``v`` (what ``given`` became in the operator's dtype and layout) as an array a user's function
    may write into: a copy unless the conversion made one already. The estimators pass their own
    state (the Lanczos vector, CG's direction, Hutchinson's probe block) and read it again after the
    product: an hvp computing in place (``np.multiply(d, v, out=v)``, torch's ``v.mul_``) made
    top_eigenvalues of diag(1..6) 3087, a Hutch++ trace of 60 read 35527, and cg report a wrong x
    as converged, with no error. (The copy costs one vector per product, next to a user's hvp.)"""
    if isinstance(given, type(v)) and not xp.may_share_memory(v, given):
        return v
    return v.copy()  # (a list, a torch tensor, a host array for a CuPy operator: copied too)


def check_finite(y, who: str, op, unwritten: str = "") -> None:
    """ValueError naming ``who`` unless every entry of the product ``y`` is finite (``unwritten``: what
    else a non-finite entry may mean, said after the message: an ``into`` writes into a NaN-filled ``out``)."""
    # A NaN or Inf entry makes the sum NaN or Inf, so a finite sum proves every entry finite in one
    # pass without a temporary; a non-finite sum can also be an overflow of finite entries: look.
    with np.errstate(over="ignore", invalid="ignore"):  # (inf - inf, an overflow: the answer, not a warning)
        total = float(y.sum())
    if not math.isfinite(total) and not bool(op.xp.isfinite(y).all()):
        raise ValueError(f"{who}: returned a product with NaN or Inf entries{unwritten} (operator {op.name!r})")


def check_estimate(value: float, name: str = "op") -> float:
    """``value``, an estimate made from the products of an operator the library computed itself
    (``from_mlp``, a dense matrix: its products are not checked one by one), or ValueError naming
    the estimator's operator argument ``name``: its products were NaN or Inf, or overflowed."""
    if not math.isfinite(value):
        raise ValueError(f"{name}: the operator's products are not finite (NaN or Inf entries, or overflow)")
    return value


#: ``CouplingCheck``'s warning bound on ``|q_i^T A q_j - q_j^T A q_i| / ||A||`` by the operator's dtype. float64:
#: ``eps^(1/3)``, far above symmetric float64 products (1e-16 .. 1e-8, ``from_grad``'s central differences
#: 3e-9) and below float32 products handed back as float64 (4e-5 .. 2.3e-3: a torch float32 MLP hvp, SLQ).
#: float32: 1e-3, above symmetric float32 products (1e-7, a torch float32 MLP hvp 6e-8, ``from_grad`` 4e-5)
#: and below a 1 % asymmetry's gaps (1.7e-3 .. 7e-3); ``from_grad`` at a gradient ~1e4 x ``||A||`` (3.1e-3:
#: its differences' rounding) is warned. (bench/RESULTS.md, 51st session, h297)
_ASYMMETRY = {np.dtype(np.float64): float(np.finfo(np.float64).eps) ** (1.0 / 3.0), np.dtype(np.float32): 1e-3}
#: Past this, at two steps, no legitimate product is: ValueError (largest rounding measured 2.3e-3 for a
#: float64 operator, 2.2e-2 for float32 -- from_mlp's, trusted anyway; a 25 % asymmetry reaches 0.13 .. 0.29)
_GROSS = 0.25


class CouplingCheck:
    """Watches a Lanczos method's ``q_i^T A q_j`` against ``q_j^T A q_i`` for an operator ``op`` whose symmetry is the
    caller's word (``from_hvp``, ``from_grad``, a wrapped ``LinearOperator``; not the library's own,
    ``trusted_symmetric``). Each step has both already (the coefficient of ``A q_j`` on ``q_{j-1}`` and the norm
    ``beta_{j-1}`` that made ``q_j``), so the check costs no product. Their difference relative to ``scale`` (the
    largest projected entry seen, ~``||A||``) is rounding for a symmetric operator and 0.25 - 0.7 x the
    asymmetry ``||A - A^T|| / ||A + A^T||`` otherwise (measured, n = 41 and 300).

    - Past ``_GROSS`` (0.25 of ``||A||``) at two steps: ValueError naming ``name`` -- no legitimate product
      reaches it, and one step alone (an early ``scale`` still small) does not decide.
    - Past the declared dtype's ``_ASYMMETRY`` bound: one RuntimeWarning naming ``name`` and the gap (the
      products are not symmetric to that dtype's rounding: products computed in float32 for a float64
      operator -- pass ``dtype=float32`` -- or an hvp with a bug). Held back while a first gross gap may
      still be followed by a second (up to 3 steps), so a refused operator raises the error only; a run that
      ends before (:meth:`finish`) warns then.
    A user's ``hvp`` that is not symmetric made Lanczos, SLQ and block Lanczos return eigenvalues of no
    operator, "converged". Not checked where the bound falls near the dtype's subnormals (rounding there is
    not relative)."""

    def __init__(self, op, name: str = "op"):
        self.op, self.name = op, name
        self.dtype = np.dtype(op.dtype)
        self.off = bool(getattr(op, "trusted_symmetric", False))
        self.steps = 0  # steps checked
        self.gross = 0  # of them past _GROSS
        self.worst = 0.0
        self.warned = False

    def __call__(self, upper, lower, scale: float) -> None:
        """Check one step: ``upper`` holds ``q_i^T A q_j``, ``lower`` ``q_j^T A q_i`` (same shape)."""
        bound = _ASYMMETRY[self.dtype]
        if self.off or not bound * scale > float(np.finfo(self.dtype).tiny / np.finfo(self.dtype).eps):
            return
        diff = float(np.max(np.abs(np.asarray(upper, dtype=np.float64) - np.asarray(lower, dtype=np.float64))))
        rel = diff / scale  # (NaN: the products' own finiteness checks name them first)
        self.steps += 1
        self.worst = max(self.worst, rel)
        if rel > _GROSS:
            self.gross += 1
            if self.gross >= 2:
                raise ValueError(
                    f"{self.name}: the operator is not symmetric: q_i^T A q_j and q_j^T A q_i of two Lanczos vectors "
                    f"differ by up to {self.worst:.3g} of ||A|| (rounding of float32 or finite-difference products "
                    f"stays below {_GROSS:g}); a Hessian-vector product must be symmetric (check the hvp: "
                    "u @ hvp(v) == v @ hvp(u))"
                )
        if self.gross == 0 or self.steps >= 4:
            self._warn()

    def finish(self) -> None:
        """The run has ended: the warning held back for a first gross gap (:meth:`__call__`), now that no
        second step will follow to raise the error. A run of one or two checked steps (n = 2 or 3, a
        block run of few blocks) ended before either: ``[[1, 5], [0, 2]]`` wrapped as a ``LinearOperator``
        gave top eigenvalue 3.02 "converged" (its eigenvalues are 1 and 2), with neither error nor warning."""
        self._warn()

    def _warn(self) -> None:
        """One RuntimeWarning naming the operator, once the gap seen passed the declared dtype's bound."""
        bound = _ASYMMETRY[self.dtype]
        if self.warned or not self.worst > bound:
            return
        self.warned = True
        f64 = self.dtype == np.float64
        suggest = "pass dtype=float32 if the products are computed in float32, else " if f64 else ""
        warnings.warn(
            f"{self.name}: the operator's products are not symmetric to {self.dtype} rounding: q_i^T A q_j and "
            f"q_j^T A q_i of two Lanczos vectors differ by {self.worst:.3g} of ||A|| (a symmetric {self.dtype} "
            f"operator's stay below {bound:.1g}); the eigenvalues are no more accurate than that: {suggest}check "
            "the hvp (u @ hvp(v) == v @ hvp(u))",
            RuntimeWarning,
            stacklevel=3,
        )


def real_array(xp, v, name: str):
    """``v`` as an array of ``xp`` holding real numbers, before any cast to an operator's dtype (a cast
    would drop the imaginary part of complex entries with only a warning, and strings or objects
    are not numbers). TypeError naming ``name``. A foreign array is read through its view
    (``_backend.as_array``): ``xp.asarray`` made an object array of a DLPack-only exporter. A SciPy
    sparse matrix or array is read as its dense values: ``H @ S`` (``matmat``, which SciPy's
    ``LinearOperator.matmat`` hands a sparse block unconverted) was refused as "V: expected real
    numbers, got an array of dtype object"; the product of an operator known by its products is
    dense anyway, ``(n, k)`` like the block. A masked array is refused (its mask would be ignored).
    Bools are refused: not numbers here, as a bool scalar is not a real to ``_scalars.real`` (a mask
    given as ``v0`` or ``precond_diag`` ran as a vector of ones and zeros); integers are not (exact
    numbers, as SciPy reads them)."""
    if type(v) is not np.ndarray and _backend._to_view(v):
        # (a masked array refused, as every array argument's check does: asarray read it as its data,
        # the masked entries' hidden values taken as numbers)
        v = _backend.as_array(v, name)
    if type(v) is not np.ndarray and is_scipy_sparse(v):  # (the vectors of a loop: no lookup, ~0.6 us)
        v = v.toarray()
    try:
        a = xp.asarray(v)
    except (TypeError, ValueError) as e:  # a ragged list...
        raise TypeError(f"{name}: cannot be read as an array of numbers ({e})") from None
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected real numbers, got an array of dtype {a.dtype}")
    return a


def in_dtype(xp, a, dtype, name: str, scale_free: bool = False):
    """``a`` (real numbers, from :func:`real_array`) as a C-contiguous array of ``dtype``, an operator's.

    A float64 ``a`` given to a float32 operator: finite entries past float32's range became inf in
    the cast (NumPy's "overflow encountered in cast", an error under ``-W error``), and the caller's
    finite vector was then refused as "not finite", or multiplied as inf. ``scale_free`` (a direction:
    a start vector, a gradient whose concentration is measured, a basis): ``a`` is first scaled by the
    power of two (exact) that puts its largest entry in ``[0.5, 1)`` where the cast would overflow or
    flush it below the dtype's normal range. Otherwise ValueError naming ``name``. A vector in range
    is cast as before, bit for bit."""
    dtype = np.dtype(dtype)
    if a.dtype != dtype and a.dtype.kind == "f" and a.size and np.finfo(a.dtype).max > np.finfo(dtype).max:
        with np.errstate(invalid="ignore"):
            big = float(xp.abs(a).max())  # (NaN: left to the callers' finiteness checks)
        with np.errstate(over="ignore"):
            over = math.isfinite(big) and not math.isfinite(float(dtype.type(big)))
        if scale_free and math.isfinite(big) and big > 0 and (over or big < float(np.finfo(dtype).tiny)):
            a = xp.ldexp(a, -math.frexp(big)[1])
        elif over:
            raise ValueError(f"{name}: entries up to {big!r} overflow {dtype} (the operator's dtype)")
    return xp.ascontiguousarray(a, dtype=dtype)
