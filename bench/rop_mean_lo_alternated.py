"""The norm R-operator's mean low part (hunt 47a, rop::Norm::lo): an old module and this one,
alternated, on norm_rop_fwd / norm_rop_bwd (float32; layer norm rows, batch norm columns).

    python bench/rop_mean_lo_alternated.py --old DIR [--rounds 11] [--reps 5] [--threads 2]

DIR holds an older ``optkern`` package (a copy of src/optkern with its built ``_cpu`` .so). As
bench/mean_lo_alternated.py: per round and case one process per module (old, then new), each warming
up twice and timing ``--reps`` calls; OMP_WAIT_POLICY=PASSIVE. Data: N(0, 1) (no group takes the low
part: the cost of the check and of the extra subtraction) and 1e7 + N(0, 1) (every group does: its
moments summed again). Printed: per case the median and min over rounds (ms) and new / old.
"""

from __future__ import annotations

import numpy as np
from _alternate import old_vs_new_main

# (name, axis, shape, offset, backward)
CASES = [
    (f"{'ln' if a else 'bn'} rop {'bwd' if b else 'fwd'} {s} +{o:g}", a, s, o, b)
    for a, s in ((1, (4096, 1024)), (0, (4096, 512)))
    for o in (0.0, 1e7)
    for b in (False, True)
]


def _fn(axis: int, shape: tuple[int, int], offset: float, backward: bool):
    from optkern.nn import normalization as nz

    rng = np.random.default_rng(0)
    h = (offset + rng.standard_normal(shape)).astype(np.float32)
    D = shape[1]
    r = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    g, vg, vb = ((1 + 0.1 * rng.standard_normal(D)).astype(np.float32) for _ in range(3))
    _, sv = nz.norm_forward(h, g, vb, 1e-5, axis)
    _, rs = nz.norm_rop_forward(r[0], g, vg, vb, sv, axis)
    if backward:
        return lambda: nz.norm_rop_backward(r[1], r[2], g, vg, sv, rs, axis)
    return lambda: nz.norm_rop_forward(r[0], g, vg, vb, sv, axis)


if __name__ == "__main__":
    old_vs_new_main(__file__, CASES, _fn)
