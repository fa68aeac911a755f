"""The state checks of a low-precision step (:mod:`._lowp`): every state array as its native call
checks it, named as its ``state_dict`` entry, before the first of several native calls writes."""

from __future__ import annotations

from operator import attrgetter

import numpy as np

from .. import _backend, lowp
from .._lowp_blocks import is_block_scale_name
from ._lowp_config import _MASTER, LowpConfig

#: each ``state_dtype``'s storage: float32 values, bfloat16 bits, 8-bit codes
STORAGE = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(np.uint16), "int8": np.dtype(np.uint8)}

_size = attrgetter("size")
_NDARRAY = {np.ndarray}


def check_state(lp: LowpConfig | None, run) -> None:
    """Every state array of ``run`` (master copies, moments in their storage, 8-bit block scales)
    as its native call checks it -- kind, size, dtype, layout, writable -- named ``state[i][name]``.

    Why: the float32 optimizers check their state before a step's first native call writes
    (``_prechecks``: ``precheck_step_``), but the low-precision ``_precheck`` checked only the grads
    and overlaps, so a step of several calls (param groups, two half formats in one group) stepped
    the first and counted its step before a later call refused a state array -- a param replaced
    by one of another size, a master made read-only through ``state_dict()``'s live arrays -- and
    the refusal named the native call's argument (``masters[0]``, ``scales[0][0]``)."""
    assert lp is not None  # low-precision mode only
    store = STORAGE[lp.state_dtype]
    for name, arrays in run.state.items():
        scales = lp.state_dtype == "int8" and is_block_scale_name(name)
        dt = np.dtype(np.float32) if scales or name == _MASTER else store
        for i, p, a in zip(run.index, run.params, arrays):
            if a is None:  # (a float32 param's master, beside half ones in optkern.torch)
                continue
            where = f"state[{i}][{name!r}]"
            if not hasattr(a, "dtype") or _backend.is_cupy(a) != _backend.is_cupy(p):
                raise TypeError(f"{where}: expected an array on its parameter's backend, got {type(a).__name__}")
            n = lowp.n_blocks(p.size, lp.block) if scales else p.size
            if a.size != n:
                what = (
                    f"{_backend.counted(n, 'block scale')} (params[{i}]: {p.size} elements in blocks of {lp.block})"
                    if scales
                    else f"{_backend.counted(n, 'element')} (its parameter's, params[{i}])"
                )
                raise ValueError(f"{where}: expected {what}, got {a.size}")
            _backend.check_written(a, dt, where)


def native_check(lp: LowpConfig | None, pairs, cache: dict) -> bool:
    """Whether every ``(run, grads)`` of ``pairs`` passes the full low-precision check (the grads,
    ``check_state``, no overlaps) in one pass of the CPU module's ``precheck_step_``; False: not
    decided here (CuPy, NumPy subclasses, a size or any check refused), the naming Python check
    decides and words the error.

    Why: steps made of several native calls (ZeRO-1 with 8-bit states: each param's piece of a
    slice its own array; ``ShardedOptimizer`` and ``DistributedOptimizer`` ask before every step)
    ran the Python check, ~25 us an array: 1000 params of 10 spent ~30 ms a step in it. The
    native pass checks each array as ``check_state`` / ``check_written`` do (dtype, C-contiguous,
    writable, aligned; a run's params and grads against its first param's dtype, grads of their
    param's shape) and every written span against every other and every grad's; the sizes are
    compared here as lists. ``cache``: per run, the expected sizes and the names the native pass
    would use on an error (built once while the run keeps its params' sizes, indices and states)."""
    assert lp is not None  # low-precision mode only
    store = STORAGE[lp.state_dtype]
    specs = []
    for run, gs in pairs:
        if run.mod is not _backend.cpu or not run.params or not set(map(type, gs)) <= _NDARRAY:
            return False
        sizes = list(map(_size, run.params))
        names = (tuple(run.state), lp.block)
        hit = cache.get(id(run))
        if hit is None or hit[0] != sizes or hit[1] != names or hit[2] != run.index:
            if len(cache) >= 64:  # (runs come and go with None grads and loaded state dicts)
                cache.clear()
            blocks = [lowp.n_blocks(n, lp.block) for n in sizes]
            written = {k: [f"state[{i}][{k!r}]" for i in run.index] for k in run.state}
            hit = (sizes, names, list(run.index), blocks, [f"params[{i}]" for i in run.index], written)
            hit += ([f"grads[{i}]" for i in run.index],)
            cache[id(run)] = hit
        specs.append((run.params[0].dtype, run.params, hit[4], gs, run.params, hit[6]))
        for name, arrays in run.state.items():
            scales = lp.state_dtype == "int8" and is_block_scale_name(name)
            try:
                if list(map(_size, arrays)) != (hit[3] if scales else sizes):
                    return False
            except AttributeError:  # (None: a float32 param's master in optkern.torch's AdaGrad-Norm)
                return False
            dt = np.dtype(np.float32) if scales or name == _MASTER else store
            specs.append((dt, arrays, hit[5][name], [], [], []))
    try:
        _backend.cpu.precheck_step_(specs)
    except (TypeError, ValueError):
        return False
    return True
