"""The argument checks of the data-parallel wrappers: ``DistributedOptimizer``'s set-up (its
optimizer, buffer sizes, ``op`` and ``grad_weight``, and the sizes agreed over the ranks) and, shared
with ``ShardedOptimizer``, a step's gradients and the wrapped optimizer's own step check, made on
this rank before any collective."""

from __future__ import annotations

import math
import sys
from operator import attrgetter

import numpy as np

from .. import _backend
from .._clip_checks import _cached_names
from .agreement import comm_kind, first_unlike


def _grad_weight(w, dtypes=()):
    """``w`` (None, or a finite real >= 0) as a float; ``dtypes``: those of the gradients it scales,
    where it must stay finite after rounding (1e300 is inf in float32: inf * 0 = NaN)."""
    if w is None:
        return None
    if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)):
        raise TypeError(f"grad_weight: expected a number or None, got {type(w).__name__}")
    try:
        w = float(w)
    except OverflowError:  # an int beyond float's range
        raise ValueError("grad_weight: must be finite and >= 0, got an integer beyond float range") from None
    if not (math.isfinite(w) and w >= 0):
        raise ValueError(f"grad_weight: must be finite and >= 0, got {w}")
    for dt in dtypes:
        with np.errstate(over="ignore"):
            r = float(np.dtype(dt).type(w)) if np.dtype(dt).kind in "fV" else w  # (ml_dtypes' bfloat16: V)
        if not math.isfinite(r):
            raise ValueError(f"grad_weight: {w!r} is not finite in the gradients' dtype {np.dtype(dt)}")
    return w


def _size(name: str, v, hint: str = "") -> float:
    """A buffer size: a number > 0 (``inf`` where ``hint`` allows it). ValueError for every bad
    value, a non-number included, as these arguments have always raised."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number > 0{hint}, got {type(v).__name__}")
    try:
        f = float(v)
    except OverflowError:  # an int beyond float's range
        f = math.inf
    if not f > 0 or (math.isinf(f) and not hint):
        raise ValueError(f"{name}: expected a finite number > 0{hint}, got {v!r}")
    return f


def _arguments(optimizer, bucket_mb, op, grad_weight, direct_kb) -> tuple:
    """DistributedOptimizer's arguments checked on this rank: (bucket_mb, direct_kb, grad_weight,
    the optimizer's params in group order)."""
    if not hasattr(optimizer, "param_groups") or not hasattr(optimizer, "step"):
        raise TypeError(f"optimizer: expected an optkern optimizer, got {type(optimizer).__name__}")
    refuse_torch_optimizer(type(optimizer), "optimizer", "an optkern.optim optimizer")
    bucket_mb = _size("bucket_mb", bucket_mb)
    direct_kb = _size("direct_kb", direct_kb, " (inf: pack every gradient)")
    if not isinstance(op, str) or op not in ("mean", "sum"):
        raise ValueError(f"op: expected 'mean' or 'sum', got {op!r}")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    return bucket_mb, direct_kb, _grad_weight(grad_weight), params


def refuse_torch_optimizer(cls, name: str, want: str) -> None:
    """TypeError naming ``name`` where ``cls`` is a ``torch.optim.Optimizer`` (an optkern.torch
    one too): the wrappers drive optkern.optim's optimizers over NumPy / CuPy views (torch tensors
    too); a torch optimizer raised "Cannot interpret 'torch.float32' as a data type" or torch's
    "can only optimize Tensors", naming no argument."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer):
        raise TypeError(
            f"{name}: expected {want}, got {cls.__module__}.{cls.__qualname__} (a torch.optim.Optimizer); "
            "pass the optkern.optim optimizer of the same name: it takes torch tensors as params"
        )


def _local_set_up(comm, optimizer, bucket_mb, op, grad_weight, direct_kb) -> tuple:
    """(this rank's checked arguments, what the other ranks must share: how its Communicator
    reduces, and the buffer sizes that cut the gradients into buckets)."""
    args = _arguments(optimizer, bucket_mb, op, grad_weight, direct_kb)
    return args, (comm_kind(comm), args[:2])


def check_same_sizes(sizes: list) -> None:
    """ValueError (on every rank: ``sizes`` are every rank's ``(bucket_mb, direct_kb)``) naming the
    first rank whose sizes differ from rank 0's. The sizes decide which gradients share a bucket and
    so the sequence and length of the collectives: a rank with another ``bucket_mb`` reduced its
    buckets against other ranks' buckets of other lengths (MPI's "message truncated" abort, or the
    sum of unrelated gradients written into every rank's, silently)."""
    r = first_unlike(sizes)
    if r is None:
        return
    for i, name in enumerate(("bucket_mb", "direct_kb")):
        if sizes[r][i] != sizes[0][i]:
            raise ValueError(
                f"{name}: {sizes[r][i]!r} on rank {r}, {sizes[0][i]!r} on rank 0 (the ranks' buckets, and so "
                "their reductions, would not pair up: pass it alike on every rank)"
            )


def check_optimizer_step(optimizer, grads) -> None:
    """Raise what ``optimizer.step(grads)`` would raise for bad input, before a wrapper writes into
    ``grads`` (its own check when the optimizer has one: optkern.optim's do)."""
    check = getattr(optimizer, "_check_step", None)
    if check is not None:
        check(grads)


_shape = attrgetter("shape")
_dtype = attrgetter("dtype")
_NDARRAY = {np.ndarray}


def check_grads(grads, params, name: str = "grads") -> list:
    """``grads`` as a list matching ``params`` in kind, dtype and shape (checked before any collective).

    Why the first tests: both wrappers ask on every step, and ``check_list_like``'s ~1.5 us an
    array was ~1.5 ms of a step of 1000 small params. Plain NumPy arrays pass what it checks when
    one ``precheck_step_`` pass reads them as their params' (one dtype: theirs, their shapes), or
    else when their shapes and dtypes equal their params' (C-level passes over the lists: several
    dtypes, strided grads); anything else (a mismatch, CuPy, subclasses, foreign arrays) goes
    through ``check_list_like``, which names the argument as it always did."""
    grads = _backend.as_list(grads, name)
    if len(grads) == len(params) and set(map(type, grads)) <= _NDARRAY and set(map(type, params)) <= _NDARRAY:
        dts = set(map(_dtype, params))
        if len(dts) == 1 and _native_like(grads, params, dts.pop()):
            return grads
        if list(map(_shape, grads)) == list(map(_shape, params)) and list(map(_dtype, grads)) == list(
            map(_dtype, params)
        ):  # (several dtypes, or a layout the native pass refuses: ~0.2 us an array)
            return grads
    return _backend.check_list_like(grads, params, name)


def _native_like(grads: list, params: list, dt) -> bool:
    """Whether ``precheck_step_`` reads ``grads`` as of their params' dtype ``dt`` and shapes (and
    C-contiguous, aligned: a grad that is not is left to the list comparison)."""
    try:
        _backend.cpu.precheck_step_([(dt, [], [], grads, params, list(_cached_names(len(grads))))])
    except (TypeError, ValueError):
        return False
    return True


def native_writable(grads: list) -> bool:
    """Whether ``grads`` (checked by ``check_grads``) are, by one pass of the CPU module's
    ``precheck_step_``, writable, C-contiguous, aligned NumPy arrays of one dtype sharing no memory
    with each other; False: not decided here (another kind, several dtypes, a layout the reduction
    takes but the native pass refuses, or an error), the caller's Python check decides and words it.

    Why: ``DistributedOptimizer`` averages the grads in place and checks that before every step;
    the per-array Python loop (``byte_span``, the writeable flag) cost ~3-7 ms a step at 1000
    arrays."""
    if not grads or not set(map(type, grads)) <= _NDARRAY or len(set(map(_dtype, grads))) != 1:
        return False
    try:
        _backend.cpu.precheck_step_([(grads[0].dtype, grads, list(_cached_names(len(grads))), [], [], [])])
    except (TypeError, ValueError):
        return False
    return True
