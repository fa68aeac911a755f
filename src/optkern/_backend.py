"""Which native module runs a call, and the checks every public function shares.

NumPy arrays go to ``optkern._cpu``; CuPy arrays go to ``optkern._cuda``
(enqueued on CuPy's current stream). One call never mixes the two.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np


def _load_cpu():
    """Import the CPU module with OpenMP workers that sleep, not spin, between
    regions, unless the user chose a wait policy. optkern's kernels alternate
    with NumPy's BLAS calls (the MLP, Hessian products): spinning OpenMP
    workers starve the BLAS threads, which made an MLP HVP 3x slower on 2
    cores; large optimizer steps are unaffected. libgomp reads the setting
    once, when it loads; the variable is restored so that libraries loaded
    later (PyTorch's own libgomp) keep their defaults."""
    keys = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
    if any(k in os.environ for k in keys):
        from . import _cpu as mod

        return mod
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from . import _cpu as mod
    finally:
        del os.environ["OMP_WAIT_POLICY"]
    return mod


_cpu = _load_cpu()

cpu = _cpu

_cuda_module = None
_cuda_error: str | None = None


def cuda_module():
    """The CUDA module, or raise RuntimeError saying why it is unavailable."""
    global _cuda_module, _cuda_error
    if _cuda_module is None and _cuda_error is None:
        try:
            from . import _cuda

            _cuda_module = _cuda
        except ImportError as e:  # not built, or no CUDA driver
            _cuda_error = str(e)
    if _cuda_module is None:
        raise RuntimeError(f"optkern was built without CUDA support or it cannot load: {_cuda_error}")
    return _cuda_module


def cuda_built() -> bool:
    try:
        cuda_module()
        return True
    except RuntimeError:
        return False


def is_cupy(a) -> bool:
    t = type(a)
    return t.__module__.startswith("cupy") and t.__name__ == "ndarray"


def array_module(a):
    """numpy or cupy, whichever owns ``a``."""
    if is_cupy(a):
        import cupy

        return cupy
    return np


def backend(*named):
    """The native module for arrays given as (name, list_of_arrays) pairs.

    Raises TypeError naming the first array whose kind (NumPy / CuPy)
    differs from the first one, or that is not an array at all.
    """
    kind = None
    first = None
    for name, arrays in named:
        if arrays is None:
            continue
        if isinstance(arrays, (np.ndarray,)) or is_cupy(arrays):
            arrays = [arrays]
            label = lambda i, name=name: name  # noqa: E731
        else:
            label = lambda i, name=name: f"{name}[{i}]"  # noqa: E731
            if not isinstance(arrays, (list, tuple)):  # a scalar, a string, an object: not arrays
                raise TypeError(f"{name}: expected a numpy or cupy array, got {type(arrays).__name__}")
        for i, a in enumerate(arrays):
            k = "cupy" if is_cupy(a) else "numpy" if isinstance(a, np.ndarray) else None
            if k is None:
                raise TypeError(f"{label(i)}: expected a numpy or cupy array, got {type(a).__name__}")
            if kind is None:
                kind, first = k, label(i)
            elif k != kind:
                raise TypeError(
                    f"{label(i)}: is a {k} array but {first} is a {kind} array; "
                    "all arrays of one call must live on one backend"
                )
    if kind == "cupy":
        return cuda_module()
    return cpu


def as_list(arrays, name: str) -> list:
    """A single array or a sequence of arrays, as a list."""
    if isinstance(arrays, np.ndarray) or is_cupy(arrays):
        return [arrays]
    try:
        return list(arrays)
    except TypeError:
        raise TypeError(f"{name}: expected an array or a list of arrays, got {type(arrays).__name__}") from None


# ---- hyper-parameter checks -------------------------------------------------


def real(name: str, value) -> float:
    """A finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    return v


def in_range(name: str, value, lo=None, hi=None, *, lo_open=False, hi_open=False) -> float:
    """A finite real in [lo, hi] (ends open where asked); None means unbounded."""
    v = real(name, value)
    bad = (lo is not None and (v < lo or (lo_open and v == lo))) or (
        hi is not None and (v > hi or (hi_open and v == hi))
    )
    if bad:
        lb = "(" if lo_open or lo is None else "["  # infinities are never allowed: open ends
        rb = ")" if hi_open or hi is None else "]"
        lo_s = "-inf" if lo is None else repr(lo)
        hi_s = "inf" if hi is None else repr(hi)
        raise ValueError(f"{name}: must be in {lb}{lo_s}, {hi_s}{rb}, got {v!r}")
    return v


def positive(name: str, value) -> float:
    return in_range(name, value, 0.0, None, lo_open=True)


def nonnegative(name: str, value) -> float:
    return in_range(name, value, 0.0, None)


def integer(name: str, value, lo=None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    v = int(value)
    if lo is not None and v < lo:
        raise ValueError(f"{name}: must be >= {lo}, got {v}")
    return v


# ---- arrays on the backend of another array (CuPy-aware) ---------------------


def _device_of(a):
    """Context manager selecting the CUDA device of a CuPy array (no-op for NumPy)."""
    import contextlib

    if is_cupy(a):
        import cupy

        return cupy.cuda.Device(a.device.id)
    return contextlib.nullcontext()


def check_written(a, dt, name: str) -> None:
    """The native checks of an array updated in place, in their order and wording (for checks
    that must run before the first of several native calls writes)."""
    on_gpu = is_cupy(a)
    if a.dtype != dt:
        raise TypeError(f"{name}: expected {dt}, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: array must be C-contiguous")
    if not on_gpu and not a.flags.writeable:
        raise ValueError(f"{name}: array is read-only")
    # NumPy's flag is cheaper than reading the data pointer (and agrees for float32/float64)
    if (a.data.ptr % a.itemsize != 0) if on_gpu else not a.flags.aligned:
        raise ValueError(f"{name}: array data is misaligned")


def on_array_device(fn):
    """Run ``fn`` with the CUDA device of its first CuPy argument current.

    CuPy allocates on the current device and the native CUDA calls run on the
    current device's stream: outputs must go where the inputs are. NumPy
    arguments cost one type check.
    """
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for a in (*args, *kwargs.values()):
            if is_cupy(a):
                with _device_of(a):
                    return fn(*args, **kwargs)
            if isinstance(a, (list, tuple)) and a and is_cupy(a[0]):
                with _device_of(a[0]):
                    return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper


def scalar_buffer(like, value: float = 0.0):
    """A 1-element float64 array holding ``value`` on the backend and device of ``like``.

    The native reductions write their results (norms, flags, AdaGrad-Norm's
    b^2) into such buffers so that a CUDA step never synchronizes the host.
    """
    xp = array_module(like)
    with _device_of(like):
        return xp.full(1, float(value), dtype=np.float64)


def asarray_like(x, like, dtype=None):
    """``x`` (NumPy, CuPy or nested sequence) as a C-contiguous array on ``like``'s backend and device.

    dtype defaults to ``like.dtype``. Used when loading a state dict: state saved on
    the host (or on another GPU) is placed next to the parameters.
    """
    xp = array_module(like)
    dtype = like.dtype if dtype is None else dtype
    if xp is np:
        return np.ascontiguousarray(to_numpy(x), dtype=dtype)
    if is_cupy(x) and x.device.id != like.device.id:
        x = x.get()  # another GPU: through the host, rare (loading a checkpoint)
    with _device_of(like):
        return xp.ascontiguousarray(xp.asarray(x, dtype=dtype))


def to_numpy(x):
    """A NumPy array with the values of ``x`` (copies from the GPU, which synchronizes)."""
    if is_cupy(x):
        return x.get()
    return np.asarray(x)
