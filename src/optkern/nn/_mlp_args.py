"""The argument checks of ``optkern.nn.MLP`` (a mixin): params, inputs, targets and directions
checked and made C-contiguous where a kernel needs it, before any product is computed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _backend
from .._pickling import NativeByName
from .losses import _labels

_NOT_USED = object()  # an argument a method does not take (None is a wrong value, not a missing one)


def _native(a):
    """``a`` as an array the native kernels take: C-contiguous, in native byte order and, on NumPy,
    aligned (a copy where needed). Its ``gamma`` / ``beta`` (and directions') views go to the
    normalization kernels, which refused a misaligned buffer (``np.frombuffer`` at an odd offset)
    naming their own ``weight`` / ``vweight``, not the caller's ``params`` / ``v``."""
    if isinstance(a, np.ndarray):
        return np.require(a, a.dtype.newbyteorder("="), requirements=("C", "A"))
    return _backend.array_module(a).ascontiguousarray(a)


def _real(a) -> bool:
    """Whether ``a`` holds real numbers the model's float32 / float64 can take: float, integer, or
    bfloat16 (ml_dtypes', a torch tensor's view: not of NumPy kind "f", and refused as x / y where
    float16 was cast; float32 holds each of its values exactly)."""
    return a.dtype.kind in "fiu" or a.dtype.name == "bfloat16"


def _of_dtype(name: str, a, dtype) -> None:
    """TypeError naming ``name`` unless ``a`` holds ``dtype`` values, in either byte order: a
    byte-swapped ``>f8`` params (or direction) is float64 values, read through a native copy
    (``_native``), as ``x`` and ``y`` of either order are (``params`` was refused, "expected
    float64, got >f8", while the same ``x`` was taken)."""
    if a.dtype.newbyteorder("=") != dtype:
        raise TypeError(f"{name}: expected {dtype}, got {a.dtype}")


class _MLPArgs(NativeByName):
    """The checks of :class:`optkern.nn.MLP`'s public methods (its sizes, dtype and loss kind)."""

    if TYPE_CHECKING:  # the MLP's attributes

        def __getattr__(self, name: str) -> Any: ...

    def _check(self, params, x, y=_NOT_USED, v=_NOT_USED):
        """Checked (xp, x, y) and v (a C-contiguous copy if needed); y / v are left out where not used."""
        for name, a in (("params", params), ("x", x), ("y", y), ("v", v)):
            if a is _NOT_USED:
                continue
            if not (isinstance(a, np.ndarray) or _backend.is_cupy(a)):
                raise TypeError(f"{name}: expected a numpy or cupy array, got {type(a).__name__}")
        y = None if y is _NOT_USED else y
        v = None if v is _NOT_USED else v
        if not _real(x):  # complex would lose its imaginary part, bool / object are not data
            raise TypeError(f"x: expected real numbers (float or integer), got {x.dtype}")
        _backend.backend(("params", params), ("x", x), ("y", y), ("v", v))
        xp = _backend.array_module(params)
        for name, a in (("params", params), ("v", v)):
            if a is not None:
                self._check_flat(name, a)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"x: expected shape (N, {self.sizes[0]}), got {tuple(x.shape)}")
        if x.shape[0] < 1:
            raise ValueError("x: needs at least one row")
        if x.shape[0] == 1 and self.norm == "batch" and self.num_layers > 1:
            # (else the first hidden layer's batch norm refuses its (1, width) input, naming "x" with a
            # shape the caller never passed)
            raise ValueError(
                f"x: batch norm uses the statistics of the batch: expected more than 1 value per channel "
                f"when training, got 1 row (shape {tuple(x.shape)})"
            )
        x = xp.ascontiguousarray(x, dtype=self.dtype)
        if y is not None and not _real(y):
            raise TypeError(f"y: expected real numbers (integer labels or float targets), got {y.dtype}")
        if y is not None and self.loss_kind == "cross_entropy" and y.dtype.kind not in "iu":
            raise TypeError(f"y: expected integer labels for the cross-entropy loss, got {y.dtype}")
        if y is not None:
            n = x.shape[0]
            if self.loss_kind == "cross_entropy":
                if y.shape != (n,):
                    raise ValueError(f"y: expected integer labels of shape ({n},), got {tuple(y.shape)}")
                # checked here, so that a label out of range is reported as the caller's `y` (the loss
                # kernel's own check would name it `labels`); a C-contiguous int64 copy where needed
                y = _labels(y, n, self.sizes[-1], xp, name="y")
            else:
                want = (n, self.sizes[-1])
                # (N,) targets of a single output, read as (N, 1); another length is refused below,
                # naming y (reshape raised its own unnamed "cannot reshape array of size ...")
                if y.shape == (n,) and self.sizes[-1] == 1:
                    y = y.reshape(n, 1)
                if tuple(y.shape) != want:
                    raise ValueError(f"y: expected targets of shape {want}, got {tuple(y.shape)}")
                y = xp.ascontiguousarray(y, dtype=self.dtype)
        return xp, x, y

    def _check_flat(self, name: str, a) -> None:
        """TypeError / ValueError naming ``name`` unless the array ``a`` (params, a direction) holds the
        model's dtype (either byte order) in shape ``(num_params,)``."""
        _of_dtype(name, a, self.dtype)
        if a.shape != (self.num_params,):
            raise ValueError(f"{name}: expected shape ({self.num_params},), got {tuple(a.shape)}")

    def _check_params(self, params) -> None:
        """``params`` checked as every product checks them (:meth:`_check`), without a batch: for
        ``hessian.from_mlp``, whose operator otherwise took any object and raised at its first product."""
        if not (isinstance(params, np.ndarray) or _backend.is_cupy(params)):
            raise TypeError(f"params: expected a numpy or cupy array, got {type(params).__name__}")
        self._check_flat("params", params)

    def _product_out(self, out, params, v, x=None, y=None):
        """The array a product is written to: fresh, or the caller's ``out`` (checked before any work).

        ``x`` (the inputs) must not share memory with ``out`` either: the backward pass writes the last
        layer's rows of ``out`` before it reads ``x`` for the first layer's weight gradient. The caller's
        ``x``, as ``params`` and ``v``, not the checked copy of a strided or cast one: compared with the
        copy, an ``out`` over the caller's strided ``x`` was accepted and written over it, no error.
        Nor ``y``: read before ``out`` is written, but the caller's targets were overwritten, no error
        (and ``from_mlp``'s later products, which read them again, were wrong)."""
        xp = _backend.array_module(params)
        if out is None:
            return xp.empty(params.shape, self.dtype)  # (native, as params of either byte order are read)
        avoid = {"params": params, "v": v}
        avoid.update((name, a) for name, a in (("x", x), ("y", y)) if a is not None)
        return _backend.out_array(out, xp, self.dtype, params.shape, avoid)

    def _read(self, params):
        """``params`` (checked by :meth:`_check`) as a C-contiguous array to read the layers from:
        the native normalization kernels take contiguous ``gamma`` / ``beta``, so a strided view
        is copied."""
        return _native(params)

    def _direction(self, v):
        """``v`` (checked by :meth:`_check`) as a C-contiguous array: a strided or broadcast view is copied."""
        return _native(v)

    def _check_block(self, params, x, y, V):
        if not (isinstance(V, np.ndarray) or _backend.is_cupy(V)):
            raise TypeError(f"V: expected a numpy or cupy array, got {type(V).__name__}")
        _of_dtype("V", V, self.dtype)
        if V.ndim != 2 or V.shape[1] != self.num_params:
            raise ValueError(f"V: expected shape (k, {self.num_params}), got {tuple(V.shape)}")
        if V.shape[0] == 0:  # (no direction to check as v: V's backend against params', the rest as ever)
            _backend.backend(("params", params), ("V", V))
            xp, x, y = self._check(params, x, y)
        else:
            xp, x, y = self._check(params, x, y, V[0])
        return xp, x, y, _native(V)
