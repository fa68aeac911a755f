"""Low precision for AdaGrad-Norm (``master_weights``): its step needs the whole gradient's norm
before any param moves, so it is composed of passes the other rules fuse into one -- the half
grads widened (and unscaled, under GradScaler) into float32 copies, the float32 optimizer's own
native step on the float32 masters, the masters rounded back into the half params -- each a
native call on the params' backend (NumPy or CuPy), the same bits on both."""

from __future__ import annotations

import numpy as np

from .. import _backend
from ._lowp_config import _MASTER


def skipped(opt) -> bool:
    """GradScaler's device flag (CuPy): this step is skipped when it is set. Read on the host (a
    synchronization): the norm step is several calls, not one kernel that could read it."""
    found = opt._amp_found_inf
    return found is not None and bool(_backend.to_numpy(found)[0])


def float32_step_arrays(opt, run, grads) -> tuple[list, list]:
    """(float32 params, float32 grads) the float32 step takes: each half param's master and its
    grad widened (times GradScaler's ``float(1 / double(scale))``, as the fused rules unscale);
    float32 params and grads as they are (a float32 grad unscaled into a copy)."""
    scale = opt._amp_grad_scale
    inv = None
    if scale is not None:
        xp = _backend.array_module(scale)
        inv = (1.0 / scale.astype(np.float64)).astype(np.float32)  # rules::inv_scale, on the scale's device
        inv = inv if xp is not np else inv[0]
    masters = run.state.get(_MASTER)
    ps, gs = [], []
    for k, (p, g) in enumerate(zip(run.params, grads)):
        fmt = opt._half_format(p)
        if fmt is None:
            ps.append(p)
            gs.append(g if inv is None else g * inv)
            continue
        w = _backend.zeros(p, p.shape, np.float32)
        with _backend._device_of(p):
            run.mod.lowp_from_half(g.view(np.uint16), w, fmt)
        if inv is not None:
            w *= inv
        ps.append(masters[k])
        gs.append(w)
    return ps, gs


def round_into_params(opt, run) -> None:
    """Each half param <- its updated master, to nearest even or stochastically (Philox stream
    ``step`` of ``seed``; element i of all params in ``param_groups`` order draws word i, as the
    fused low-precision step numbers them: ``_element_bases``)."""
    lp = opt._lowp
    masters = run.state.get(_MASTER)
    for k, (p, base) in enumerate(zip(run.params, opt._element_bases(run))):
        fmt = opt._half_format(p)
        if fmt is not None:
            with _backend._device_of(p):
                run.mod.lowp_to_half(masters[k], p.view(np.uint16), fmt, lp.sr, lp.seed, run.step + 1, base)
