"""A CuPy stand-in over NumPy, for running optkern's CUDA module emulated on the CPU.

tools/cuda_emu builds ``optkern._cuda`` from cuda/*.cu as host code; "device
memory" is then host memory. This package gives optkern and its CUDA tests the
CuPy they expect: ``cupy.ndarray`` holds a NumPy array (its "device" memory;
``data.ptr`` is its buffer's address) and behaves as CuPy 14's does where
optkern's Python code could tell the difference, so that code which only works
on the stand-in fails here, not first on a GPU (checked against CuPy's
cupy/_core/core.pyx, flags.pyx, _kernel.pyx, _routines_indexing.pyx,
_manipulation/basic.py, cuda/device.pyx):

- it is not a ``numpy.ndarray`` (``isinstance(a, np.ndarray)`` is False) and
  has no buffer, ``__array_interface__`` or ``ctypes``: ``np.asarray(a)`` and
  NumPy functions that convert raise TypeError ("Implicit conversion to a
  NumPy array is not allowed..."); ``.get()``, ``cupy.asnumpy`` copy;
- ``flags`` has only ``c_contiguous``, ``f_contiguous``, ``owndata``
  (read-only; no ``writeable``, no ``aligned``); only CuPy's methods and
  attributes are there (no ``setflags``, ``tofile``, ``flat``...);
- ``device`` is a ``cupy.cuda.Device`` (``id``, ``int()``, ``<CUDA Device 0>``);
- no ``__index__``; scalars come back as 0-d arrays (indexing, reductions);
- a NumPy array (0-d too, but in a comparison) as an operand of an operator, a ufunc or a module
  function (``cupy.concatenate``, ``cupy.where``...) raises TypeError
  ("Unsupported type <class 'numpy.ndarray'>"), as does
  ``cupy.ascontiguousarray`` of one; ``np.add(a, b)`` and other NumPy functions
  given CuPy arrays dispatch to CuPy's (NEP 13/18);
- host arrays go in through ``cupy.asarray`` / ``cupy.array`` or ``a.set(h)``
  (``h`` of ``a``'s dtype and shape, ``a`` contiguous); ``a[...] = h``,
  ``a.fill(h)`` and ``cupy.copyto(a, h)`` take a scalar ``h`` only (integer or
  boolean index arrays: host values too).

``cupy.linalg`` and ``cupy.random`` are NumPy's over the held arrays and the
``*_like`` functions accept host arrays, as CuPy's do. ``cupy.cuda`` has
devices, streams and events that do nothing (launches run synchronously).
Not emulated: graph capture (``Stream`` has no ``begin_capture``, so the graph
tests skip), NCCL, several devices; ``__dlpack__`` exports host memory
(DLPack device 1), so torch sees a CPU tensor.
"""

from __future__ import annotations

import functools
import types

import numpy as _np

from . import cuda as cuda

__version__ = "13.0.0+okemu"

from ._core import _HOST_OK, _call, _check_operand, _Proxy, _ufunc, _unwrap, _wrap, _wrapped, ndarray

__all__ = ["ndarray"]

linalg = _Proxy(_np.linalg)


class _Testing:
    """cupy.testing: NumPy's assertions over the host copies of CuPy arrays."""

    def __getattr__(self, name):
        fn = getattr(_np.testing, name)
        if not callable(fn):
            return fn

        @functools.wraps(fn)
        def call(*args, **kwargs):
            return fn(*(asnumpy(a) if isinstance(a, ndarray) else a for a in args), **kwargs)

        return call


testing = _Testing()


class _RandomState(_Proxy):
    """cupy.random.RandomState: its draws take a dtype (NumPy's legacy generator has none)."""

    def standard_normal(self, size=None, dtype=float):
        return _wrap(self._target.standard_normal(size).astype(dtype))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return _wrap(self._target.uniform(low, high, size).astype(dtype))


class _Random(_Proxy):
    def RandomState(self, seed=None):
        return _RandomState(_np.random.RandomState(seed))

    def default_rng(self, seed=None):
        return _Proxy(_np.random.default_rng(seed))

    def Generator(self, bit_generator):
        return _Proxy(_np.random.Generator(bit_generator))


random = _Random(_np.random)


def asarray(a, dtype=None, order=None, *, blocking=False):
    """Device arrays pass through (no copy); host data is copied, as an upload is."""
    if isinstance(a, ndarray) and (dtype is None or _np.dtype(dtype) == a.dtype):
        return a
    if isinstance(a, ndarray):
        return a.astype(dtype)
    return ndarray._of(_np.array(_unwrap(a), dtype=dtype, order=order or "K"))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    return ndarray._of(_np.array(_unwrap(obj), dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get(stream, order, out)
    if out is not None:
        out[...] = a
        return out
    return _np.asarray(a, order=order)


def from_dlpack(x):
    if isinstance(x, ndarray):
        return ndarray._of(x._a.view())
    return ndarray._of(_np.from_dlpack(x))


def get_array_module(*args):
    import sys

    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else _np


class _MemoryPool:
    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass


_pool = _MemoryPool()


def get_default_memory_pool() -> _MemoryPool:
    return _pool


def get_default_pinned_memory_pool() -> _MemoryPool:
    return _pool


def ascontiguousarray(a, dtype=None):
    # cupy/_core/core.pyx ascontiguousarray(_ndarray_base a, ...): a host array is refused
    if not isinstance(a, ndarray):
        raise TypeError(f"Argument 'a' has incorrect type (expected cupy.ndarray, got {type(a).__name__})")
    return _wrap(_np.ascontiguousarray(a._a, dtype), (a,))


def copyto(dst, src, casting="same_kind", where=None) -> None:
    # cupy/_manipulation/basic.py copyto: from a host array, a single value only
    if isinstance(src, _np.ndarray) and src.size != 1:
        raise ValueError("non-scalar numpy.ndarray cannot be used for copyto")
    _np.copyto(dst._a, _unwrap(src), casting=casting, where=_unwrap(where) if where is not None else True)


def _only_device(fn):
    """A NumPy function as CuPy's: host arrays among its arguments (or in a list of them) refused,
    as CuPy's kernels refuse them (``_kernel.pyx`` ``_preprocess_arg``; ``concatenate``: "Only
    cupy arrays can be concatenated")."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        for a in args:
            for x in a if isinstance(a, list | tuple) else (a,):
                _check_operand(x)
        return _call(fn, args, kwargs)

    return call


def __getattr__(name: str):
    v = getattr(_np, name)
    if isinstance(v, types.ModuleType):
        return _Proxy(v)
    if isinstance(v, _np.ufunc):
        return _ufunc(v)
    if callable(v) and not isinstance(v, type):
        return _wrapped(v) if name in _HOST_OK else _only_device(v)
    return v
