"""The rows' mean low part (hunt 46a, rules::mean_lo): an old module and this one, alternated, on the
row norms' forward and backward (float32, weight given).

    python bench/mean_lo_alternated.py --old DIR [--rounds 11] [--reps 5] [--threads 2] [--cases i,j]

DIR holds an older ``optkern`` package (a copy of src/optkern with its built ``_cpu`` .so). Each round
runs, per case, one process per module (old, then new); each warms up twice and times ``--reps`` calls
into preallocated outputs. Data: N(0, 1) (no row takes the low part: the cost of the check) and
1e7 + N(0, 1) (every row does: the backward sums the row's moments again). OMP_WAIT_POLICY=PASSIVE.
Printed: per case the median and min over rounds of each process's median of reps (ms), and new / old.
"""

from __future__ import annotations

import numpy as np
from _alternate import old_vs_new_main

# (name, kind, shape, offset, backward)
CASES = [
    (f"{k} {'bwd' if b else 'fwd'} {s} +{o:g}", k, s, o, b)
    for k, s in (("ln", (4096, 1024)), ("in", (32, 64, 64, 64)))
    for o in (0.0, 1e7)
    for b in (False, True)
]


def _fn(kind: str, shape: tuple[int, ...], offset: float, backward: bool):
    from optkern.norm import functional as F

    rng = np.random.default_rng(0)
    x = (offset + rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    C = shape[-1] if kind == "ln" else shape[1]
    w = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32)
    out = np.empty_like(x)
    if kind == "ln":
        _, sv = F.layer_norm(x, (C,), w, None, 1e-5)
        if backward:
            return lambda: F.layer_norm_backward(dy, x, w, sv, out=out)
        return lambda: F.layer_norm(x, (C,), w, None, 1e-5, out=out)
    _, sv = F.instance_norm(x, weight=w, eps=1e-5)
    if backward:
        return lambda: F.instance_norm_backward(dy, x, w, sv, out=out)
    return lambda: F.instance_norm(x, weight=w, eps=1e-5, out=out)


if __name__ == "__main__":
    old_vs_new_main(__file__, CASES, _fn)
