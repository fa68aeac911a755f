"""The curvature operator's class: a symmetric ``n x n`` linear map known only through its
products, each checked where it enters (operators.py builds them and re-exports the class)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import _backend
from .._array_checks import float_dtype, type_name
from .._pickling import NativeByName
from .._torch_written import given_out
from ._linear_operator import LinearOperatorProtocol, _linear_operator_base
from ._operator_pickling import operator_copy, operator_deepcopy, operator_reduce
from ._products import check_finite, checked, in_dtype, private, real_array


class CurvatureOperator(NativeByName, LinearOperatorProtocol):
    """A symmetric linear operator defined by a matrix-vector product.

    Args:
      matvec: ``v (n,) -> A v (n,)`` on arrays of ``xp``.
      n: dimension.
      dtype: dtype of the vectors the products take and return.
      xp: array module of the vectors (numpy or cupy).
      matmat: optional ``V (n, k) -> A V``; default applies ``matvec`` per column.
      name: a label for ``repr``.
      into: optional ``(v, out) -> None`` writing ``A v`` into ``out``: ``matvec(v, out=...)``
        then reuses the caller's buffer (the Lanczos recurrences pass one per run) instead of
        a fresh array per product.
      check: the names of ``matvec``, ``matmat`` and ``into`` in the errors about their products:
        each product is checked (``_products.checked``: an array of ``xp`` of shape ``(n,)`` /
        ``(n, k)``, float32 or float64 -- cast to ``dtype`` --, finite; TypeError / ValueError
        naming the function, and nothing written into a caller's ``out``). A non-finite product
        of ``into`` is refused too: ``into`` writes a NaN-filled buffer of its own, copied into ``out``
        once checked, so entries it leaves unwritten are refused and a refused product leaves ``out``
        as it was. None: products the library computes
        itself (``from_mlp``, dense matrices), not checked.
      avoid: optional ``() -> {name: array}``: the arrays the caller gave the operator (its params,
        its data), which ``matvec``'s ``out`` must not share memory with (ValueError naming ``out``
        and the array, before anything is written): a product copied into ``out`` over them
        computed right, then overwrote the caller's weights, no error.
    """

    def __init__(
        self,
        matvec: Callable,
        n: int,
        dtype=np.float64,
        xp=np,
        matmat: Callable | None = None,
        name: str = "operator",
        into: Callable | None = None,
        *,
        check: tuple[str, str, str] | None = ("matvec", "matmat", "into"),
        avoid: Callable | None = None,
    ):
        _check_functions(matvec, matmat, into, check, avoid)
        n = _backend.integer("n", n, lo=1)
        dtype = float_dtype(dtype, "dtype")
        if not isinstance(name, str):  # (shown by repr and the estimators' messages: a str, or a TypeError now)
            raise TypeError(f"name: expected a str, got {type(name).__name__}")
        # (a vector of it must exist: past 2**63 - 1 bytes every estimator failed unnamed, "array is too big")
        _backend.array_elements("n", n, dtype)
        if getattr(xp, "__name__", None) not in ("numpy", "cupy"):  # else the first product fails, unnamed
            raise TypeError(f"xp: expected the numpy or cupy module, got {xp!r}")
        self._mv = matvec
        self._mm = matmat
        self._into = into
        # optional v -> (A v, v.A v) of a library operator (hessian.from_mlp's Gauss-Newton): hessian.cg
        # then takes its curvature from there, without a pass over the vectors
        self._quad: Callable | None = None
        # (v, then) -> (None, v.A v): the product fed slice by slice to then(v.A v)'s sink (MLP._ggn_at)
        self._quad_then: Callable | None = None
        # (pickling=) -> (callable, args) rebuilding an equal operator in another process (pickle, deepcopy): set by
        # the constructors whose operator is fixed by picklable data (hessian.from_mlp); None: see __reduce_ex__
        self._recipe: Callable | None = None
        self._check = check
        # Products the library computes itself (check=None: from_mlp, a matrix require_symmetric read) are
        # symmetric by construction; the Krylov estimators check the others' (_products.CouplingCheck)
        self.trusted_symmetric = check is None
        self._avoid = avoid
        self.xp = xp
        self.name = name
        self.num_matvecs = 0  # products applied so far (columns of matmat count one each)
        if isinstance(self, _linear_operator_base()):
            _linear_operator_base().__init__(self, dtype=dtype, shape=(n, n))
        else:
            self.shape = (n, n)
            self.dtype = dtype

    ndim = 2

    def _vector(self, v, name="v", scale_free=False):
        """``v`` as a C-contiguous ``(n,)`` vector of the operator's dtype; ``scale_free``: a direction
        (``_products.in_dtype``: scaled into the dtype's range where a cast would leave it)."""
        xp = self.xp
        v = real_array(xp, v, name)
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.shape != (self.shape[0],):
            raise ValueError(f"{name}: expected shape ({self.shape[0]},) or ({self.shape[0]}, 1), got {tuple(v.shape)}")
        v = in_dtype(xp, v, self.dtype, name, scale_free)
        # a misaligned vector is copied (a contiguous one is kept): the native passes refuse it naming
        # their own argument (cg's b: "p: array data is misaligned")
        return v if xp is not np or v.flags.aligned else v.copy()

    @property
    def writes_into(self) -> bool:
        """True when ``matvec(v, out=...)`` writes the product straight into ``out`` (no fresh array)."""
        return self._into is not None

    def matvec(self, v, out=None):
        """``A v`` for ``v`` of shape ``(n,)`` or ``(n, 1)`` (the result has the same shape).

        ``out``: a C-contiguous ``(n,)`` array of the operator's dtype to receive the product
        (returned); written directly where the operator supports it (``writes_into``), copied
        otherwise. It must not share memory with ``v``.
        """
        shape = getattr(v, "shape", None)
        if shape is None and isinstance(v, (list, tuple)):  # (a (n, 1) list: a (n, 1) product, as SciPy's)
            try:
                shape = np.shape(v)
            except ValueError:  # (ragged: _vector names v)
                pass
        given, v = v, self._vector(v)
        chk = self._check
        if out is None:
            if chk is not None:
                v = private(self.xp, v, given)
            y = self._mv(v)
            if chk is not None:
                y = checked(y, chk[0], self, v)
        else:
            avoid = {"v": v} if self._avoid is None else {"v": v, **self._avoid()}
            y = _backend.out_array(out, self.xp, self.dtype, (self.shape[0],), avoid)
            if chk is not None:
                v = private(self.xp, v, given)
            if self._into is not None:
                dst = y
                if chk is not None:
                    # NaN where `into` must write: an `into` that returned None leaving `out` (or part of it)
                    # unwritten had the buffer's earlier contents (the Lanczos vector, the last product) read
                    # as A v -- lanczos stopped at step 1 with alpha 1, no error; now the check below sees it.
                    # A private buffer, copied into `out` once checked: NaN-filling `out` itself left it all
                    # NaN when `into` raised or was refused (a torch out changed without a version bump).
                    y = self.xp.full_like(dst, np.nan)
                r = self._into(v, y)
                if chk is not None:
                    # An `into` returning its product instead of writing it (``lambda v, out: d * v``)
                    # left `out` as it was: Lanczos read an uninitialized buffer as A v, no error.
                    # None or `out` itself (NumPy's ``out=`` functions return it) are what it may return.
                    if r is not None and r is not y:
                        a = _backend.as_array(r, chk[2])
                        if not (isinstance(a, type(y)) and self.xp.may_share_memory(a, y)):
                            raise TypeError(
                                f"{chk[2]}: returned a {type_name(r)} instead of writing the product into "
                                "`out` (return None or out)"
                            )
                    check_finite(y, chk[2], self, " (or left entries of `out` unwritten)")
                    dst[...] = y
                    y = dst
            else:
                r = self._mv(v)
                if chk is not None:  # before `out` is written: a refused product leaves it as it was
                    r = checked(r, chk[0], self)
                y[...] = r
        self.num_matvecs += 1
        shape = shape if shape is not None and len(shape) == 2 else None
        if out is not None:  # (the caller's object: a torch out, that tensor, its version bumped)
            return given_out(out, y, shape)
        return y if shape is None else y.reshape(shape)

    def matmat(self, V):
        """``A V`` for ``V`` of shape ``(n, k)`` (a SciPy sparse ``V``: of its values; the product is dense)."""
        xp = self.xp
        # (real numbers, named V: a complex block lost its imaginary part to the cast below with only
        # a warning, and the columns' matvec named "v")
        V = real_array(xp, V, "V")
        if V.ndim != 2 or V.shape[0] != self.shape[0]:
            raise ValueError(f"V: expected shape ({self.shape[0]}, k), got {tuple(V.shape)}")
        given, V = V, in_dtype(xp, V, self.dtype, "V")  # (refused naming V, not a column's "v")
        if self._mm is not None:
            if self._check is not None:
                V = private(xp, V, given)
            Y = self._mm(V)
            if self._check is not None:
                Y = checked(Y, self._check[1], self, V, (V.shape[0], V.shape[1]))
            # (counted once the block's product is taken, as matvec counts: a matmat that raised or
            # whose product was refused counted its k columns as products applied)
            self.num_matvecs += V.shape[1]
            return Y
        out = xp.empty((V.shape[0], V.shape[1]), dtype=self.dtype)
        for j in range(V.shape[1]):
            out[:, j] = self.matvec(V[:, j])
        return out

    rmatvec = matvec
    rmatmat = matmat

    def __call__(self, v):
        return self.matvec(v)

    def __repr__(self):
        return f"<{self.shape[0]}x{self.shape[1]} CurvatureOperator '{self.name}' dtype={self.dtype}>"

    # pickle (multiprocessing's spawn and Pool arguments) and copies: _pickling.py's operator rules
    __reduce_ex__ = operator_reduce
    __copy__ = operator_copy
    __deepcopy__ = operator_deepcopy


def _check_functions(matvec, matmat, into, check, avoid) -> None:
    """TypeError naming the argument (as ``check`` names the functions: ``from_hvp``'s ``fn``) unless
    ``matvec`` is callable and ``matmat``, ``into`` and ``avoid`` are callable or None, and ``check`` is
    None or three names. A class built with another object (``CurvatureOperator(5, 3)``) failed at its
    first product with Python's unnamed "'int' object is not callable" (``check=('a',)``: an
    IndexError at the first ``matmat``)."""
    if check is not None and not (
        isinstance(check, tuple) and len(check) == 3 and all(isinstance(c, str) for c in check)
    ):
        raise TypeError(f"check: expected None or a tuple of three names (matvec, matmat, into), got {check!r}")
    names = check or ("matvec", "matmat", "into")
    for name, fn, optional in ((names[0], matvec, False), (names[1], matmat, True), (names[2], into, True)):
        if not (callable(fn) or (optional and fn is None)):
            raise TypeError(f"{name}: expected a callable{' or None' if optional else ''}, got {type(fn).__name__}")
    if avoid is not None and not callable(avoid):
        raise TypeError(f"avoid: expected a callable or None, got {type(avoid).__name__}")


def _operator_class(xp):
    if xp is np and _linear_operator_base().__name__ == "LinearOperator":
        return _ScipyCurvatureOperator()
    return CurvatureOperator


_SCIPY_CLASS = None


def _ScipyCurvatureOperator():
    global _SCIPY_CLASS
    if _SCIPY_CLASS is None:
        _SCIPY_CLASS = type(
            "CurvatureLinearOperator",
            (CurvatureOperator, _linear_operator_base()),
            {"__doc__": "A CurvatureOperator that is also a scipy LinearOperator."},
        )
        # found by its name, as pickle looks a class up (its lookup failed: a PicklingError from inside pickle)
        globals()["CurvatureLinearOperator"] = _SCIPY_CLASS
    return _SCIPY_CLASS


def __getattr__(name: str):
    """``CurvatureLinearOperator`` made on first use (SciPy imported then), as an unpickling process asks."""
    if name == "CurvatureLinearOperator":
        return _ScipyCurvatureOperator()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
