"""The checks of array arguments made in Python, before a native call (or several) writes: an
array against the one it must match, an array written in place, a caller's ``out``. Their
wording is the native module's (``grads[2]: expected float32, got float64``), so an error reads
the same whichever layer finds it. Re-exported by ``_backend``; scalars: ``_scalars``."""

from __future__ import annotations

import contextlib
import threading
import weakref

import numpy as np


def is_cupy(a) -> bool:
    return is_cupy_type(type(a))


#: CuPy's ndarray type once seen (``is_cupy_type``): a set lookup from then on, where the name
#: test costs two attribute reads and a string method per array, and without importing CuPy.
_CUPY_TYPES: set = set()


def is_cupy_type(t) -> bool:
    """Whether ``t`` is ``cupy.ndarray`` (told by its module and name: CuPy need not be imported)."""
    if t in _CUPY_TYPES:
        return True
    if t is np.ndarray:  # (the common case: no attribute reads)
        return False
    if t.__module__.startswith("cupy") and t.__name__ == "ndarray":
        _CUPY_TYPES.add(t)  # (a type object of an extension class lives for the process)
        return True
    return False


def is_bfloat16(dt) -> bool:
    """Whether dtype ``dt`` is ml_dtypes' bfloat16 in native byte order, the only one whose bytes
    are the bfloat16 bits the kernels read: a byte-swapped one (``newbyteorder``) has the same
    ``name`` but other numbers in native order (1.5 reads -2.98), as '>f2' is not float16."""
    return dt.name == "bfloat16" and dt.isnative


#: the native-order dtypes of the float kernels (bfloat16 aside: ml_dtypes', see ``is_bfloat16``)
_FLOAT_DTYPES = tuple(np.dtype(t) for t in (np.float16, np.float32, np.float64))


def is_float_dtype(dt) -> bool:
    """Whether dtype ``dt`` is one the float kernels take (dropout, clipping): float16, bfloat16,
    float32 or float64 in native byte order (a byte-swapped one holds other numbers, see
    ``is_bfloat16``; an integer or complex one no float at all)."""
    return dt in _FLOAT_DTYPES or is_bfloat16(dt)


def float_dtype(dtype, name: str = "dtype") -> np.dtype:
    """``dtype`` as native float32 or float64 (what the curvature products, ``nn.MLP`` and the native
    passes take; a byte-swapped ``">f8"`` as float64: the arrays made of it are native); TypeError
    naming ``name``. ``None`` is refused: NumPy reads it as float64, which hid a forgotten argument
    (the curvature constructors' one checker: ``hessian.from_hvp`` took it, ``nn.MLP`` refused it)."""
    try:
        parsed = None if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):
        parsed = None
    dt = None if parsed is None else parsed.newbyteorder("=")
    if dt not in (np.float32, np.float64):  # (a dtype by its name, anything else by its repr)
        raise TypeError(f"{name}: expected float32 or float64, got {repr(dtype) if parsed is None else parsed}")
    return dt


def type_name(a) -> str:
    """``"list"``, ``"numpy.ndarray"``, ``"cupy.ndarray"``: a kind as the native checks name it."""
    t = type(a)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__.split('.')[0]}.{t.__qualname__}"


def check_one_array(a, name: str) -> None:
    """TypeError naming ``name`` unless ``a`` is one NumPy or CuPy array (foreign ones already viewed):
    for an argument that is a single array, where ``backend`` also takes a list of arrays and named
    a list of numbers by its first element ("z[0]: expected a numpy or cupy array, got float")."""
    if not (isinstance(a, np.ndarray) or is_cupy(a)):
        raise TypeError(f"{name}: expected a numpy or cupy array, got {type_name(a)}")


#: NumPy views of exports through the unversioned DLPack protocol (``__dlpack__()`` without
#: ``max_version``: no read-only flag in it, so NumPy views the memory read-only whether it is or
#: not), by id: ``_foreign.as_array`` enters them, ``read_only`` says why they are refused.
_UNVERSIONED_DLPACK: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def read_only(name: str, a) -> ValueError:
    """The refusal of read-only ``a`` (argument ``name``) as a write target: ``array is read-only``,
    with why when the view came through the unversioned DLPack protocol (optkern cannot tell
    writable memory from a read-only buffer there, so it is refused either way)."""
    msg = f"{name}: array is read-only"
    if _UNVERSIONED_DLPACK.get(id(a)) is a:
        msg += (
            " (exported through the unversioned DLPack protocol: its __dlpack__() takes no max_version, "
            "so the export carries no writability and NumPy views it read-only; pass a NumPy or CuPy "
            "view of its memory, or an exporter of DLPack 1.0 or newer)"
        )
    return ValueError(msg)


_READ_ONLY = ": array is read-only"


def hint_read_only(e: ValueError, arrays, names=None) -> ValueError:
    """``e`` (a native ``<name>: array is read-only`` refusal) with ``read_only``'s why when one of
    ``arrays`` (the call's arguments: arrays and lists of them) is such a DLPack view; else ``e``.
    ``names``: the arrays' names, one per array of the flat list ``arrays``: only the one ``e``
    names is looked at (another argument's unversioned view does not explain this refusal)."""
    msg = str(e)
    if not _UNVERSIONED_DLPACK or not msg.endswith(_READ_ONLY):
        return e
    name = msg[: -len(_READ_ONLY)]
    if names is not None:
        arrays = [a for a, n in zip(arrays, names) if n == name]
    for x in arrays:
        for a in x if isinstance(x, (list, tuple)) else (x,):
            if _UNVERSIONED_DLPACK.get(id(a)) is a:
                return read_only(name, a)
    return e


@contextlib.contextmanager
def read_only_explained(arrays, names=None):
    """Native calls' read-only refusals inside, explained by ``hint_read_only`` (same arguments):
    the one place a native ``array is read-only`` learns why for an unversioned DLPack view."""
    try:
        yield
    except ValueError as e:
        hinted = hint_read_only(e, arrays, names)
        if hinted is e:
            raise
        raise hinted from None


def check_like(a, ref, name: str, *, kind: bool = True, dtype=None, shape: bool = True) -> None:
    """TypeError / ValueError naming ``name`` unless ``a`` is an array of ``ref``'s kind (a NumPy
    array for a NumPy ``ref``, CuPy for CuPy; either when ``kind`` is False), dtype (``dtype``
    when given) and shape (unless ``shape`` is False): a grad against its parameter, a saved state
    against its array."""
    if is_cupy(ref) and kind:
        ok, want = is_cupy(a), "a cupy.ndarray"
    elif kind:
        ok, want = isinstance(a, np.ndarray) and not is_cupy(a), "a numpy.ndarray"
    else:
        ok, want = isinstance(a, np.ndarray) or is_cupy(a), "a numpy or cupy array"
    if not ok:
        raise TypeError(f"{name}: expected {want}, got {type_name(a)}")
    dt = ref.dtype if dtype is None else np.dtype(dtype)
    if a.dtype != dt:
        raise TypeError(f"{name}: expected {dt}, got {a.dtype}")
    if shape and a.shape != ref.shape:
        raise ValueError(f"{name}: expected shape {tuple(ref.shape)}, got {tuple(a.shape)}")


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` ("1 array", "0 arrays", "7 arrays"; ``plural`` where it is not ``noun + "s"``):
    the one wording of a count in an error message, which read "expected 1 arrays" at one parameter."""
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"


def check_list_like(
    arrays: list, refs: list, name: str, *, of: str = "parameter", none: bool = False, kind: bool = True
) -> list:
    """``arrays`` (a list, as ``_backend.as_list`` makes it) checked one for one against ``refs``:
    as many (``{name}: expected N arrays (one per {of})``, "1 array" at one), each ``check_like`` its own (``kind``
    passed on); a None entry allowed when ``none`` (a param without a gradient). Returns ``arrays``."""
    if len(arrays) != len(refs):
        raise ValueError(f"{name}: expected {counted(len(refs), 'array')} (one per {of}), got {len(arrays)}")
    for i, (a, r) in enumerate(zip(arrays, refs)):
        if a is not None or not none:
            check_like(a, r, f"{name}[{i}]", kind=kind)
    return arrays


def check_read(a, dt, name: str) -> None:
    """The native checks of an array read (of dtype ``dt``, C-contiguous), in their order and wording."""
    if a.dtype != dt:
        raise TypeError(f"{name}: expected {dt}, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: array must be C-contiguous")


def check_written(a, dt, name: str) -> None:
    """The native checks of an array updated in place, in their order and wording (for checks
    that must run before the first of several native calls writes)."""
    check_read(a, dt, name)
    if not is_cupy(a) and not a.flags.writeable:
        raise read_only(name, a)
    check_aligned(a, name)


def check_aligned(a, name: str) -> None:
    """The native check that ``a``'s data is aligned to its element size, in its wording."""
    # NumPy's flag is cheaper than reading the data pointer (and agrees for float32/float64)
    if (a.data.ptr % a.itemsize != 0) if is_cupy(a) else not a.flags.aligned:
        raise ValueError(f"{name}: array data is misaligned")


def out_array(out, xp, dtype, shape: tuple, avoid: dict):
    """The caller's ``out`` for a result of ``dtype`` and ``shape`` on ``xp``, checked before any
    work: a writable C-contiguous array sharing no memory with the arrays of ``avoid`` (name ->
    array). TypeError / ValueError naming ``out``. A foreign ``out`` (a torch tensor, any DLPack or
    array-interface exporter) is checked and returned as its NumPy / CuPy view, so the result lands
    in the caller's memory."""
    from . import _backend  # (its as_array views foreign arrays; _backend imports this module)
    from ._overlap import shares  # (bounded for NumPy, byte bounds for CuPy; _overlap imports this module)

    if _backend.is_foreign(out):
        out = _backend.as_array(out, "out")
    if not (isinstance(out, np.ndarray) or is_cupy(out)) or is_cupy(out) != (xp is not np):
        raise TypeError(f"out: expected a {xp.__name__} array, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out: expected {np.dtype(dtype)}, got {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out: expected shape {tuple(shape)}, got {tuple(out.shape)}")
    if not out.flags.c_contiguous:
        raise ValueError("out: array must be C-contiguous")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise read_only("out", out)
    for name, a in avoid.items():
        if shares(out, a):
            raise ValueError(f"out shares memory with {name}")
    return out


def byte_span(a) -> tuple[int, int]:
    """(first byte, one past the last byte) of the memory a NumPy or CuPy array's elements lie in,
    any strides (negative ones too: more than ``nbytes`` from its first element, either way);
    ``(ptr, ptr)`` when it is empty. Spans that do not meet share no memory; spans that meet may
    still not (``a[::2]`` and ``a[1::2]``): ``shares_memory`` decides those."""
    ptr = a.__array_interface__["data"][0] if isinstance(a, np.ndarray) else a.data.ptr
    if a.size == 0:
        return ptr, ptr
    lo, hi = ptr, ptr + a.itemsize
    for n, stride in zip(a.shape, a.strides):
        if stride < 0:
            lo += (n - 1) * stride
        else:
            hi += (n - 1) * stride
    return lo, hi


def first_sharing(arrays: list, apart: int | None = None) -> tuple[int, int] | None:
    """``(first, later)``: the indices of two of ``arrays`` that share memory (the pair whose later
    array comes first in memory order), or None: the first of :func:`sharing_pairs`."""
    return next(sharing_pairs(arrays, apart), None)


def sharing_pairs(arrays: list, apart: int | None = None):
    """Each ``(first, later)`` pair of indices of ``arrays`` that share memory, in the memory order of
    the later one. Byte spans are compared first; only arrays whose spans meet are tested by
    ``_overlap.shares`` (NumPy: exactly up to a work bound, shared past it; views that interleave,
    like ``a[::2]`` and ``a[1::2]``, or a matrix's column blocks, share no element; CuPy: the byte
    bounds). ``apart``: only pairs of one of ``arrays[:apart]`` and one of ``arrays[apart:]`` count
    (arrays written against arrays that may share among themselves)."""
    from ._overlap import shares  # (_overlap imports this module)

    spans = sorted((*byte_span(a), k) for k, a in enumerate(arrays) if a.size)
    open_: list = []  # (end, k) of the spans that may still reach the next one
    for lo, hi, k in spans:
        open_ = [(end, j) for end, j in open_ if end > lo]
        for _, j in open_:
            if apart is not None and (j < apart) == (k < apart):
                continue
            if shares(arrays[k], arrays[j]):
                first, later = sorted((j, k))
                yield first, later
        open_.append((hi, k))


def check_disjoint(written, read=()) -> None:
    """ValueError unless no ``(lo, hi, name)`` byte span of ``written`` overlaps another written
    span or a ``read`` one (read spans may share memory with each other: nothing writes them).
    The Python twin of the native step check (cpp/step_checks.cpp), for steps that cannot use it
    (CuPy arrays, low-precision storage of several dtypes); names the later span of the pair and,
    at one address, the read one (the argument passed)."""
    spans = sorted(
        [(lo, hi, n, True) for lo, hi, n in written] + [(lo, hi, n, False) for lo, hi, n in read],
        key=lambda s: (s[0], not s[3]),
    )
    far = {True: (-1, ""), False: (-1, "")}  # the written / read span reaching furthest so far
    for lo, hi, name, w in spans:
        for against in (True, False) if w else (True,):
            end, owner = far[against]
            if lo < end:
                raise ValueError(f"{name} shares memory with {owner} (aliasing arrays cannot be updated in place)")
        if hi > far[w][0]:
            far[w] = (hi, name)


def distinct_elements(w, name: str) -> None:
    """ValueError naming ``name`` where two elements of ``w``, an array written in place, share memory
    (a writable ``np.broadcast_to``, torch's ``expand``, ``as_strided``): writes made one after
    another leave the last one in all of them. Strides nested (each at least the span of the smaller
    ones) are the common case and cheap to check; others (rare) are decided by the elements' byte
    offsets."""
    if w.size == 0:
        return
    dims = sorted((abs(int(st)), int(n)) for st, n in zip(w.strides, w.shape) if n > 1)
    span = w.itemsize
    for stride, n in dims:
        if stride < span:
            break
        span += stride * (n - 1)
    else:
        return
    offsets = np.zeros((), np.int64)
    for stride, n in dims:
        offsets = np.add.outer(offsets, np.arange(n, dtype=np.int64) * stride)
    if np.unique(offsets).size < offsets.size:
        raise ValueError(f"{name}: array has overlapping elements (its strides {tuple(w.strides)} reuse memory)")


#: set (in this thread) while a loader takes an object's own earlier state back: ``check_finite``
_OWN_STATE = threading.local()


@contextlib.contextmanager
def restoring_own_state():
    """While ``optkern.load`` undoes a failed load, putting a target back through its own
    ``load_state_dict`` from its ``state_dict()`` of before: ``check_finite`` passes that state
    as it was. Refused there, a diverged run's state (NaN in an optimizer's moments or an average,
    the usual reason to load a checkpoint) could not be put back: the undo raised that refusal in
    place of the error that failed the load, and the target kept the checkpoint's state."""
    was = getattr(_OWN_STATE, "on", False)
    _OWN_STATE.on = True
    try:
        yield
    finally:
        _OWN_STATE.on = was


def check_finite(a, name: str) -> None:
    """ValueError naming ``name`` where ``a`` (a floating-point NumPy or CuPy array of saved state)
    holds NaN or inf: loaded, it would make every later value NaN too, so the loaders refuse a
    diverged run's state (except to put an object's own state back: ``restoring_own_state``)."""
    if a.size == 0 or getattr(_OWN_STATE, "on", False):
        return
    refuse_nonfinite(a, name)


def refuse_nonfinite(a, name: str) -> None:
    """ValueError naming ``name`` and counting the NaN / inf entries of ``a`` (a floating-point NumPy
    or CuPy array), if any: the one message of the loaders (``check_finite``) and of
    :func:`optkern.lowp.quantize_blockwise`, which has no code for them."""
    # operators only (no module functions): the same code for NumPy and CuPy, on the array's device.
    # |x| <= max is False exactly for NaN and +-inf
    bad = a.size - int((abs(a) <= float(np.finfo(a.dtype).max)).sum())
    if bad:
        raise ValueError(f"{name}: {bad} non-finite entries (NaN or inf) of {a.size}")
