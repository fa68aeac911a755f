"""Batch norm's training statistics computed once (hunt 48d): an old module and this one, alternated,
on ``optkern bench norm``'s batch_norm rows (float32 (256, 64, 32, 32), training, weight, bias and
running buffers given), on its data and on the same data + 1e4 (every channel far from 0: the old
module computed the channels' moments again in the forward and the backward for the means' low parts).

    python bench/bn_lo_alternated.py --old DIR [--rounds 11] [--reps 5] [--threads 2] [--cases i,j]

DIR holds an older ``optkern`` package (a copy of src/optkern with its built ``_cpu`` .so). Each round
runs, per case, one process per module (old, then new); each warms up twice and times ``--reps`` calls
of the bench's own zero-argument call (optkern.benchmarks.norm.optkern_calls). OMP_WAIT_POLICY=PASSIVE.
Printed: per case the median and min over rounds of each process's median of reps (ms), and new / old.
"""

from __future__ import annotations

from _alternate import old_vs_new_main

# (name, offset added to x, pass index in optkern_calls: 0 fwd, 1 fwd+bwd, 2 fwd out=, 3 fwd+bwd out=)
PASSES = ("fwd", "fwd+bwd", "fwd out=", "fwd+bwd out=")
CASES = [(f"batch_norm {PASSES[k]} +{o:g}", o, k) for o in (0.0, 1e4) for k in (1, 3, 0)]


def make(offset: float, k: int):
    """The bench's own zero-argument call of pass ``k`` on its batch_norm data + ``offset``."""
    from optkern.benchmarks import norm as bench

    name, shape, extra = next(c for c in bench.cases(False) if c[0] == "batch_norm")
    x, dy, w, b = bench._data(shape, name)
    x = (x + offset).astype(x.dtype)
    return bench.optkern_calls(name, (x, dy, w, b), extra, "cpu")[k]


if __name__ == "__main__":
    old_vs_new_main(__file__, CASES, make)
