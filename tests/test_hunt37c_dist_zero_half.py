"""ZeRO-1 (``ShardedOptimizer``) with float16 / bfloat16 params (``master_weights=True``) and a
``grad_weight`` (uneven shards): each rank's gradient was multiplied by the weight rounded to the
16-bit type, the product rounded there, and (ordered, float16) the ranks' products summed in
float16 -- where ``DistributedOptimizer`` takes the weighted sum in float32 and rounds once. The
docs promise ZeRO-1 equals data-parallel bit for bit with ``ordered=True``; now both take the
weighted sum in float32 (weight, products, sum) and round once. Unordered (MPI's own summation
order), the slice is checked against the float64 weighted sum: half an ulp of the 16-bit type plus
float32's error (the 16-bit products missed it).

Each MPI test launches this file under ``mpiexec -n N python -m mpi4py`` with one case."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here
from ulps import spacing_lowp  # (the 16-bit ulp)

CASE_TIMEOUT = 90


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 3, 4])
def test_zero_weighted_half_sum_equals_data_parallel(n):
    pytest.importorskip("mpi4py")
    run_case(__file__, "weighted_half", n, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
@pytest.mark.parametrize("n", [3, 4])
def test_zero_weighted_half_steps_equal_data_parallel(n):
    pytest.importorskip("mpi4py")
    run_case(__file__, "weighted_half_steps", n, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def case_weighted_half(comm) -> None:
    from optkern import optim
    from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

    dtypes = [np.dtype(np.float16)]
    try:
        import ml_dtypes

        dtypes.append(np.dtype(ml_dtypes.bfloat16))
    except ImportError:
        pass
    rows = np.arange(1, comm.size + 1) * 7  # uneven shards
    w = float(rows[comm.rank] / rows.sum())
    sizes = (1023, 7, 1, 0, 300)
    for dt in dtypes:
        rng = np.random.default_rng(300 + comm.rank)
        g0 = [(rng.standard_normal(m) * 3).astype(np.float32).astype(dt) for m in sizes]
        # the float64 weighted sum; allowed: half an ulp of the 16-bit type plus float32's error
        every = np.stack(comm.allgather_object(np.concatenate([g.reshape(-1) for g in g0]).astype(np.float64)))
        weights = np.array(comm.allgather_object(w))
        want64 = weights @ every
        allow = 0.5 * spacing_lowp(want64, dt) + 8 * 2.0**-24 * (weights @ np.abs(every))
        for ordered in (True, False):
            c = Communicator(comm.mpi, backend="mpi", ordered=ordered)
            dp = DistributedOptimizer(
                optim.SGD([np.zeros(m, dt) for m in sizes], lr=1.0, master_weights=True), c, grad_weight=w
            )
            want = [g.copy() for g in g0]
            dp.synchronize(want)
            full = np.concatenate([g.reshape(-1) for g in want])
            z = ShardedOptimizer(
                optim.SGD, [np.zeros(m, dt) for m in sizes], c, lr=1.0, master_weights=True, grad_weight=w
            )
            shard = z.synchronize([g.copy() for g in g0])
            got = np.concatenate([s.reshape(-1) for s in shard])
            mine = full[z.lo : z.hi]
            assert got.dtype == dt and got.size == mine.size, (got.dtype, got.size, mine.size)
            if ordered:  # the same sums in the same order: the same bits
                bad = int(np.count_nonzero(got.view(np.uint16) != mine.view(np.uint16)))
            else:  # MPI's own order (its allreduce and reduce-scatter add differently from 3 ranks)
                bad = int(np.count_nonzero(np.abs(got.astype(np.float64) - want64[z.lo : z.hi]) > allow[z.lo : z.hi]))
            assert bad == 0, f"{dt} ordered={ordered}: {bad} of {mine.size} elements off"


def case_weighted_half_steps(comm) -> None:
    """A few AdamW steps with float32 masters (stochastic rounding too): the same params as data-parallel."""
    from optkern import optim
    from optkern.distributed import DistributedOptimizer, ShardedOptimizer

    dtypes = [np.dtype(np.float16)]
    try:
        import ml_dtypes

        dtypes.append(np.dtype(ml_dtypes.bfloat16))
    except ImportError:
        pass
    rows = [5, 3, 0, 2, 4][: comm.size]  # uneven, a rank without rows
    w = rows[comm.rank] / sum(rows)
    sizes = ((7,), (1,), (0,), (1023,), (3, 5))
    for dt in dtypes:
        for extra in ({}, {"stochastic_rounding": True, "seed": 3}):
            rng = np.random.default_rng(0)
            init = [rng.standard_normal(s).astype(np.float32).astype(dt) for s in sizes]
            rng = np.random.default_rng(10 + comm.rank)
            steps = [[(rng.standard_normal(s) * 2).astype(np.float32).astype(dt) for s in sizes] for _ in range(3)]
            dp, zp = [p.copy() for p in init], [p.copy() for p in init]
            d = DistributedOptimizer(optim.AdamW(dp, lr=1e-2, master_weights=True, **extra), comm, grad_weight=w)
            z = ShardedOptimizer(optim.AdamW, zp, comm, lr=1e-2, master_weights=True, grad_weight=w, **extra)
            for g in steps:
                d.step([x.copy() for x in g])
                z.step([x.copy() for x in g])
            for i, (a, b) in enumerate(zip(dp, zp)):
                assert a.tobytes() == b.tobytes(), f"{dt} {extra}: params[{i}] differ from data-parallel"


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
