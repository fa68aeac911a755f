"""``ShardedOptimizer`` with AdaGrad-Norm: its ``||g'||^2`` summed over every rank's slices."""

from __future__ import annotations

import numpy as np

from .. import _backend
from ..optim._lowp_config import _half_fmt


def reduce_sq_norms(z) -> None:
    """AdaGrad-Norm: each group's ``||g'||^2`` over all ranks' slices, one ordered allreduce."""
    local = np.zeros(len(z._slices))
    k = 0
    for gi, (a, b) in enumerate(z._slices):
        if b > a:
            grp = z.optimizer._checked(z.optimizer.param_groups[gi], f"param_groups[{gi}]")[0]
            p, g = z._flat[a:b], z._local_grads[k]
            if _half_fmt(p.dtype) is not None:  # master weights: g' of the float32 step
                m32 = master(z, gi)
                p, g = (p.astype(np.float32) if m32 is None else m32), g.astype(np.float32)
            if z.optimizer._amp_grad_scale is not None:  # (GradScaler: the step's g' is unscaled)
                scale = z.optimizer._amp_grad_scale
                inv = (1.0 / _backend.to_numpy(scale).astype(np.float64)).astype(np.float32)[0]
                g = g * inv  # (as _lowp_norm.float32_step_arrays unscales: float64 grads stay float64)
            local[gi] = _sq_norm(p, g, grp)
            k += 1
    z.comm.allreduce(local, "sum", ordered=True, check=False)
    z._sq_by_group = [float(v) for v in local]


def _sq_norm(p, g, grp) -> float:
    """``||g'||^2`` of a slice, ``g' = ±g + weight_decay p`` as the rule forms it (rules::effective_grad,
    one fma) and sums it: the native AdaGrad-Norm step with lr = 0 on a copy of ``p``, from b^2 = 0.
    (Formed here in NumPy, ``g + wd * p`` rounded twice, an ulp off the fma in some elements: with
    weight decay b^2 drifted ~1e-9 relative from the unsharded optimizer's in two steps.)"""
    mod = _backend.backend(("params", [p]))
    with _backend._device_of(p):
        b_sq = _backend.array_module(p).zeros(1, np.float64)
        mod.adagrad_norm_([p.copy()], [g], b_sq, 0.0, float(grp.weight_decay), bool(grp.maximize))
    return float(_backend.to_numpy(b_sq)[0])


def master(z, gi: int):
    """The local optimizer's float32 master of group ``gi``'s slice (master weights), or None
    before its first step."""
    for run in z.optimizer._runs[gi]:
        masters = run.state.get("master_param")
        if masters:
            return masters[0]
    return None
