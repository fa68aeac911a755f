"""A CuPy stand-in over NumPy, for running optkern's CUDA module emulated on the CPU.

tools/cuda_emu builds ``optkern._cuda`` from cuda/*.cu as host code; "device
memory" is then host memory. This package gives optkern and its CUDA tests the
CuPy they expect: ``cupy.ndarray`` is a NumPy subclass (so optkern's
``_backend.is_cupy`` routes it to ``optkern._cuda``) whose ``data.ptr`` is its
buffer's address; every NumPy function is here, its array results turned into
this ndarray; ``cupy.cuda`` has devices, streams and events that do nothing
(launches run synchronously). Not emulated: graph capture (``Stream`` has no
``begin_capture``, so the graph tests skip), NCCL, several devices.
"""

from __future__ import annotations

import functools
import types

import numpy as _np

from . import cuda

__version__ = "13.0.0+okemu"


class _Memory:
    __slots__ = ("ptr", "device_id")

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr
        self.device_id = 0


class ndarray(_np.ndarray):  # noqa: N801 - CuPy's name
    """A NumPy array that optkern takes for a CuPy one (its memory is the "device" memory)."""

    @property
    def data(self):  # type: ignore[override]
        return _Memory(self.__array_interface__["data"][0])

    @property
    def device(self):  # type: ignore[override]
        return cuda.Device(0)

    @property
    def _c_contiguous(self) -> bool:
        return bool(self.flags.c_contiguous)

    @property
    def __cuda_array_interface__(self) -> dict:
        d = dict(self.__array_interface__)
        d["version"] = 3
        d["stream"] = None
        return d

    def get(self, stream=None, order="C", out=None):
        if out is not None:
            out[...] = _np.asarray(self)
            return out
        return _np.array(self, order=order, subok=False)

    def set(self, arr, stream=None) -> None:
        self[...] = arr

    def __getitem__(self, key):
        # CuPy's integer indexing gives 0-d arrays (device memory), not scalars.
        r = super().__getitem__(key)
        return _np.asarray(r).view(ndarray) if isinstance(r, _np.generic) else r

    def __array_wrap__(self, obj, context=None, return_scalar=False):
        # CuPy's reductions give 0-d arrays, not scalars.
        return _np.asarray(obj).view(ndarray)

    def __repr__(self) -> str:
        return _np.asarray(self).__repr__().replace("array(", "cupy_emulated(", 1)


ndarray.__module__ = "cupy"


def _wrap(x):
    """NumPy results as this module's arrays (inside tuples and lists too)."""
    if isinstance(x, _np.ndarray) and not isinstance(x, ndarray):
        return x.view(ndarray)
    if isinstance(x, _np.generic):  # a NumPy scalar result: CuPy gives a 0-d array
        return _np.asarray(x).view(ndarray)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _wrapped(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        return _wrap(fn(*args, **kwargs))

    return call


class _Proxy:
    """A NumPy module or object whose callables return this module's arrays."""

    def __init__(self, target) -> None:
        self._target = target

    def __getattr__(self, name):
        v = getattr(self._target, name)
        if isinstance(v, types.ModuleType):
            return _Proxy(v)
        if callable(v) and not isinstance(v, type):
            fn = _wrapped(v)
            if isinstance(v, types.FunctionType | types.BuiltinFunctionType | _np.ufunc):
                return fn
            return _proxy_result(fn)
        return v


def _proxy_result(fn):
    """Constructors (RandomState, default_rng...): their objects' methods wrap too."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        r = fn(*args, **kwargs)
        return r if isinstance(r, ndarray | _np.ndarray | int | float | tuple | list) else _Proxy(r)

    return call


linalg = _Proxy(_np.linalg)
testing = _np.testing


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
    return _np.array(a, dtype=dtype, order=order or "K").view(ndarray)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    return _np.array(obj, dtype=dtype, copy=True, order=order, ndmin=ndmin).view(ndarray)


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if out is not None:
        out[...] = _np.asarray(a)
        return out
    return _np.array(a, order=order, subok=False)


def from_dlpack(x):
    return _np.from_dlpack(x).view(ndarray)


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


def __getattr__(name: str):
    v = getattr(_np, name)
    if isinstance(v, types.ModuleType):
        return _Proxy(v)
    if callable(v) and not isinstance(v, type):
        return _wrapped(v)
    return v
