"""optkern.distributed with the newer features (a hunt at 2 ranks).

ZeRO-1 with stochastic rounding (``stochastic_rounding=True`` with ``master_weights``, or
``state_dtype="bfloat16"``, whose moments round stochastically): element i of all params draws
Philox word i, so no two elements of a step round with the same word and an optimizer's bits do not
depend on how its params are grouped. Each rank's local optimizer numbered its own slice from 0:
every rank rounded its slice with the words of the first ``chunk`` elements (the ranks' roundings
correlated, the same word for element ``j`` of every slice), and the steps were not the unsharded
(data parallel) optimizer's, bit for bit, as they are without stochastic rounding. Now the slices
draw the words of their global elements: ZeRO-1 (ordered) equals data parallel bit for bit.

The test launches this file under ``mpiexec -n N python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


def test_zero1_with_stochastic_rounding_steps_as_data_parallel_bit_for_bit():
    run_case(__file__, "sr_zero", 2, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _bits(a):
    return a.view(np.uint16) if a.dtype.itemsize == 2 else a.view(np.uint32)


def case_sr_zero(comm) -> None:
    import ml_dtypes

    from optkern import optim
    from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

    bf16 = np.dtype(ml_dtypes.bfloat16)
    cases = [
        (optim.Adam, np.float32, dict(lr=1e-2, state_dtype="bfloat16", seed=3)),
        (optim.AdamW, bf16, dict(lr=1e-2, master_weights=True, stochastic_rounding=True)),
        (optim.SGD, np.float16, dict(lr=1e-2, momentum=0.9, master_weights=True, stochastic_rounding=True)),
    ]
    for cls, dt, hyper in cases:
        rng = np.random.default_rng(0)  # the same params on every rank
        params = [rng.standard_normal(n).astype(np.float32).astype(dt) for n in (301, 7, 2050)]
        zp, dp = [p.copy() for p in params], [p.copy() for p in params]
        z = ShardedOptimizer(cls, zp, Communicator(comm.mpi, ordered=True), **hyper)
        d = DistributedOptimizer(cls(dp, **hyper), Communicator(comm.mpi, ordered=True))
        for s in range(3):
            r = np.random.default_rng(100 * s + comm.rank)
            g = [r.standard_normal(p.size).astype(np.float32).astype(dt) for p in params]
            z.step([x.copy() for x in g])
            d.step([x.copy() for x in g])
            for i, (a, b) in enumerate(zip(zp, dp)):
                assert np.array_equal(_bits(a), _bits(b)), (cls.__name__, hyper, s, i)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
