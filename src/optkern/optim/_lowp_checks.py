"""The state checks of a low-precision step (:mod:`._lowp`): every state array as its native call
checks it, named as its ``state_dict`` entry, before the first of several native calls writes."""

from __future__ import annotations

import numpy as np

from .. import _backend, lowp
from ._lowp_config import _MASTER, LowpConfig

#: each ``state_dtype``'s storage: float32 values, bfloat16 bits, 8-bit codes
STORAGE = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(np.uint16), "int8": np.dtype(np.uint8)}


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
        scales = lp.state_dtype == "int8" and name.endswith("_scale")
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
                    f"block scales (params[{i}]: {p.size} elements in blocks of {lp.block})"
                    if scales
                    else f"elements (its parameter's, params[{i}])"
                )
                raise ValueError(f"{where}: expected {n} {what}, got {a.size}")
            _backend.check_written(a, dt, where)
