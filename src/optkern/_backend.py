"""Which native module runs a call, and the checks every public function shares.

NumPy arrays go to ``optkern._cpu``; CuPy arrays go to ``optkern._cuda``
(enqueued on CuPy's current stream). One call never mixes the two. Other
arrays (torch tensors, JAX arrays...) enter through ``as_array`` (``_foreign``) -- called by
``as_list`` and ``on_array_device``, the argument layer every public call goes
through -- as NumPy or CuPy arrays over their own memory.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import Mapping, Set

import numpy as np

from . import _env
from ._array_checks import check_aligned as check_aligned
from ._array_checks import check_disjoint as check_disjoint
from ._array_checks import check_finite as check_finite
from ._array_checks import check_like as check_like
from ._array_checks import check_list_like as check_list_like
from ._array_checks import check_one_array as check_one_array
from ._array_checks import check_read as check_read
from ._array_checks import check_written as check_written
from ._array_checks import counted as counted
from ._array_checks import distinct_elements as distinct_elements
from ._array_checks import hint_read_only as hint_read_only
from ._array_checks import is_bfloat16 as is_bfloat16
from ._array_checks import is_cupy as is_cupy
from ._array_checks import is_cupy_type as is_cupy_type
from ._array_checks import is_float_dtype as is_float_dtype
from ._array_checks import out_array as out_array
from ._array_checks import read_only as read_only
from ._array_checks import read_only_explained as read_only_explained
from ._array_checks import restoring_own_state as restoring_own_state
from ._array_checks import type_name as type_name

# (foreign arrays' views: ``_foreign``; the names stay importable from here)
from ._foreign import _NEVER_FOREIGN as _NEVER_FOREIGN
from ._foreign import _is_masked, host_values
from ._foreign import as_array as as_array
from ._foreign import is_array as is_array
from ._foreign import is_foreign as is_foreign
from ._int_params import integer_parameters
from ._scalars import INT64_MAX as INT64_MAX
from ._scalars import array_elements as array_elements
from ._scalars import finite_in as finite_in
from ._scalars import flag as flag
from ._scalars import in_range as in_range
from ._scalars import integer as integer
from ._scalars import nonnegative as nonnegative
from ._scalars import positive as positive
from ._scalars import real as real
from ._state_keys import state_keys as state_keys


def _load_cpu():
    """Import the CPU module with OpenMP workers that sleep, not spin, between
    regions, unless the user chose a wait policy. optkern's kernels alternate
    with NumPy's BLAS calls (the MLP, Hessian products): spinning OpenMP
    workers starve the BLAS threads, which made an MLP HVP 3x slower on 2
    cores; large optimizer steps are unaffected. libgomp reads the setting
    once, when it loads; the variable is restored so that libraries loaded
    later (PyTorch's own libgomp) keep their defaults."""
    global omp_passive
    _env.serial_below()  # (a bad value refused here, before cpp/parallel_cost.cpp reads it)
    keys = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
    # (a runtime loaded before, by torch typically, has read its settings already)
    omp_passive = "torch" not in sys.modules
    if any(k in os.environ for k in keys):
        omp_passive = omp_passive and os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
        from . import _cpu as mod

        return mod
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from . import _cpu as mod
    finally:
        del os.environ["OMP_WAIT_POLICY"]
    return mod


#: whether the OpenMP runtime optkern loaded started with OMP_WAIT_POLICY=PASSIVE (as far as
#: can be told: not when torch was imported first). Libraries loaded later that link the same
#: runtime (torch's CPU wheels here) share it and its policy.
omp_passive = False
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
    """Whether the CUDA module ``optkern._cuda`` was built and loads here (a CUDA driver present);
    False, never an error, otherwise (``optkern.info()["cuda_built"]``; CuPy arrays then raise)."""
    try:
        cuda_module()
        return True
    except RuntimeError:
        return False


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
    fast = _one_kind(named)
    if fast is not None:
        return fast
    kind = None
    first = None
    for name, arrays in named:
        if arrays is None:
            continue
        if is_array(arrays):
            arrays = [arrays]
            label = lambda i, name=name: name  # noqa: E731
        else:
            label = lambda i, name=name: f"{name}[{i}]"  # noqa: E731
            if not isinstance(arrays, (list, tuple)):  # a scalar, a string, an object: not arrays
                raise TypeError(f"{name}: expected a numpy or cupy array, got {type(arrays).__name__}")
        for i, a in enumerate(arrays):
            if type(a) is not np.ndarray and is_foreign(a):  # callers convert first: counts as what it views
                a = as_array(a, label(i))
            k = (
                "numpy"
                if type(a) is np.ndarray
                else "cupy"
                if is_cupy(a)
                else "numpy"
                if isinstance(a, np.ndarray)
                else None
            )
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


def _one_kind(named):
    """``backend``'s answer from the set of the arrays' exact types, one C-level pass a list: the
    CPU module when all are NumPy arrays, the CUDA module when all are CuPy's (or no arrays at
    all: the CPU); None when another type is there (foreign, a subclass, not an array), which
    ``backend``'s walk names. (The walk tested each array's kind in Python: ~3 us an array for
    CuPy arrays, which the CUDA calls' native checks test again anyway.)"""
    types: set = set()
    for _, arrays in named:
        t = type(arrays)
        if t is list or t is tuple:
            types.update(map(type, arrays))
        elif arrays is not None:
            types.add(t)
    if not types or types == _NUMPY_TYPE:
        return cpu
    if all(map(is_cupy_type, types)):
        return cuda_module()
    return None


_NUMPY_TYPE = {np.ndarray}


#: The type of a DLPack capsule (any PyCapsule; ``types.CapsuleType`` from Python 3.13).
CAPSULE = type(datetime.datetime_CAPI)


def as_list(arrays, name: str) -> list:
    """A single array or a sequence of arrays, as a list of NumPy / CuPy arrays (foreign arrays
    viewed by ``as_array``; other elements are left for the caller's checks to name)."""
    if isinstance(arrays, np.ndarray) or is_cupy(arrays):
        return [as_array(arrays, name) if type(arrays) is not np.ndarray else arrays]
    if is_foreign(arrays):
        return [as_array(arrays, name)]
    if isinstance(arrays, (Mapping, Set, str, bytes)):
        # list() of a dict took its keys for the arrays (then "grads[0]: ... got str"); a set has no
        # order to match params by: named here, with what is taken
        raise TypeError(
            f"{name}: expected an array or a list of arrays, got {type(arrays).__name__} (pass a list in order)"
        )
    try:
        out = list(arrays)
    except TypeError:
        raise TypeError(f"{name}: expected an array or a list of arrays, got {type(arrays).__name__}") from None
    # one pass over the types: the common cases (NumPy arrays, CuPy arrays) stay cheap
    others = set(map(type, out)) - _NATIVE_TYPES
    if others and not all(map(is_cupy_type, others)):  # (as_array returns a CuPy array itself)
        out = [a if type(a) is np.ndarray else as_array(a, f"{name}[{i}]") for i, a in enumerate(out)]
    return out


#: What a list may hold without a per-element look (``as_list``, the optimizers' fast paths): NumPy
#: arrays, and DLPack capsules, which the native calls read where they only read (the torch
#: adapter's grads). A capsule sent through ``as_array`` came back unchanged, after ~1.5 us of
#: type tests each: 0.3 ms of a 200-tensor adapter step, about 5 % of it at 16M parameters.
_NATIVE_TYPES = {np.ndarray, CAPSULE}


def read_once(arrays):
    """``arrays`` as a list when it is an iterable other than an array, a list or a tuple (a
    generator), else as given: for a caller that passes it on after reading it (checks, then the
    write, then the caller's own objects kept), where each read its own pass of a generator and
    the later ones found it exhausted. Not iterable: returned for ``as_list`` to name."""
    if arrays is None or isinstance(arrays, (list, tuple, Mapping, Set, str, bytes)) or is_array(arrays):
        return arrays  # (a dict, set or str: for as_list to refuse by name, not its keys taken)
    try:
        return list(arrays)
    except TypeError:
        return arrays


# ---- arrays on the backend of another array (CuPy-aware) ---------------------


#: what ``_device_of`` returns for a NumPy array: one shared instance (a nullcontext keeps no state
#: and may be entered again, nested or not)
_NO_DEVICE = contextlib.nullcontext()


def _device_of(a):
    """Context manager selecting the CUDA device of a CuPy array (no-op for NumPy)."""
    if is_cupy(a):
        import cupy

        return cupy.cuda.Device(a.device.id)
    return _NO_DEVICE


def on_array_device(fn):
    """Run ``fn`` with the CUDA device of its first CuPy argument current.

    CuPy allocates on the current device and the native CUDA calls run on the
    current device's stream: outputs must go where the inputs are. NumPy
    arguments cost one type check. Foreign arrays (torch, JAX...; also in lists) are replaced
    by their NumPy / CuPy views first (``as_array``) -- except in the parameters annotated ``int`` or
    an optional int (``seed``, ``offset``; ``_int_params``): those are no arrays, and a torch tensor
    given as one reaches ``fn``'s check as the user passed it (its view was refused as "seed: expected
    an integer, got ndarray", a type the caller never passed).
    """
    import functools
    import inspect

    names = list(inspect.signature(fn).parameters)
    integers = None  # (resolved at the first call that views: the module's names all defined by then)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        nonlocal integers
        if all(map(_plain, args)) and all(map(_plain, kwargs.values())):  # NumPy only: nothing to do
            return fn(*args, **kwargs)
        if any(map(_has_foreign, args)) or any(map(_has_foreign, kwargs.values())):
            if integers is None:
                integers = integer_parameters(fn)
            args, kwargs = _views_of_args(names, args, kwargs, integers)
        for a in (*args, *kwargs.values()):
            if is_cupy(a):
                with _device_of(a):
                    return fn(*args, **kwargs)
            if isinstance(a, (list, tuple)) and a and is_cupy(a[0]):
                with _device_of(a[0]):
                    return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper


#: Argument types that are neither arrays nor hold any (exact types: a subclass takes the long way).
_SCALAR_TYPES = frozenset({int, float, bool, str, complex, type(None)})


def _plain(a) -> bool:
    """A NumPy array, a number, a string or None, or a list / tuple of these: no foreign array to
    view and no CUDA device to enter. Decided on exact types, in well under a microsecond (the full
    test asks each argument for ``__dlpack__``: 1.6 us per number)."""
    t = type(a)
    if t is np.ndarray or t in _SCALAR_TYPES:
        return True
    if t is list or t is tuple:
        return all(type(x) is np.ndarray or type(x) in _SCALAR_TYPES for x in a)
    return False


def _to_view(a) -> bool:
    """Whether ``as_array`` has something to do with ``a``: a foreign array or a matrix to view, a masked one
    to refuse."""
    return is_foreign(a) or _is_masked(a) or isinstance(a, np.matrix)


def _has_foreign(a) -> bool:
    if type(a) is np.ndarray:
        return False
    if isinstance(a, (list, tuple)):
        return any(map(_to_view, a))
    return _to_view(a)


def _views_of_args(names, args, kwargs, keep=frozenset()):
    """``args`` and ``kwargs`` with foreign arrays (and foreign arrays in lists) viewed by ``as_array``,
    but for the arguments named in ``keep`` (integers: left for the function's check to name)."""

    def conv(a, name):
        if name in keep:
            return a
        if isinstance(a, (list, tuple)) and any(map(_to_view, a)):
            # (a named tuple's items by field, saved.mean as the norms' checks name it, not saved[0])
            fields = getattr(a, "_fields", None)
            at = (lambda i: f"{name}.{fields[i]}") if fields else (lambda i: f"{name}[{i}]")
            items = [as_array(x, at(i)) for i, x in enumerate(a)]
            return type(a)(*items) if fields else type(a)(items)  # named tuples too
        return as_array(a, name)

    args = tuple(conv(a, names[i] if i < len(names) else f"args[{i}]") for i, a in enumerate(args))
    return args, {k: conv(v, k) for k, v in kwargs.items()}


def scalar_buffer(like, value: float = 0.0):
    """A 1-element float64 array holding ``value`` on the backend and device of ``like``.

    The native reductions write their results (norms, flags, AdaGrad-Norm's
    b^2) into such buffers so that a CUDA step never synchronizes the host.
    """
    xp = array_module(like)
    with _device_of(like):
        return xp.full(1, float(value), dtype=np.float64)


def zeros(like, shape, dtype):
    """Zeros of ``shape`` and ``dtype`` on the backend and device of ``like``."""
    with _device_of(like):
        return array_module(like).zeros(shape, dtype)


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
    """A NumPy array with the values of ``x`` (copies from the GPU, which synchronizes); a torch
    tensor's shown values (one that requires grad, a neg / conj view: ``shown_values``), which
    ``np.asarray`` refused with torch's unnamed RuntimeError."""
    if is_cupy(x):
        return x.get()
    return host_values(x)
