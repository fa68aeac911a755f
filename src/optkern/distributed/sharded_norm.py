"""``ShardedOptimizer`` with AdaGrad-Norm: its ``||g'||^2`` summed over every rank's slices."""

from __future__ import annotations

import numpy as np

from .. import _backend
from ..optim._lowp_config import _half_fmt


def reduce_sq_norms(z) -> None:
    """AdaGrad-Norm: each group's ``||g'||^2`` over all ranks' slices, one ordered allreduce."""
    xp = _backend.array_module(z._flat)
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
                g = g.astype(np.float32) * inv
            e = -g if grp.maximize else g
            if grp.weight_decay != 0:
                e = e + p.dtype.type(grp.weight_decay) * p
            e = e.astype(np.float64)
            local[gi] = float(xp.sum(e * e))
            k += 1
    z.comm.allreduce(local, "sum", ordered=True, check=False)
    z._sq_by_group = [float(v) for v in local]


def master(z, gi: int):
    """The local optimizer's float32 master of group ``gi``'s slice (master weights), or None
    before its first step."""
    for run in z.optimizer._runs[gi]:
        masters = run.state.get("master_param")
        if masters:
            return masters[0]
    return None
