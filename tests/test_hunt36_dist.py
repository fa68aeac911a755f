"""DistributedOptimizer's ``grad_weight`` (a weighted sum over the ranks, for uneven shards) of
float16 / bfloat16 gradients: each rank's gradient was multiplied by the weight rounded to the
16-bit type, the product rounded there, and on the ordered (deterministic) path the ranks' products
summed in float16, each addition rounded -- where ``op="mean"`` of the same gradients sums in
float32 and rounds once. Now the weighted sum is taken in float32 (weight, products, sum) and
rounded once, on every path (packed and direct buckets, ordered and MPI's own reduction).

Reference: the float64 weighted sum, within half an ulp of the 16-bit type plus the float32
arithmetic's error (float16 accumulation misses it by an ulp on many elements).

Each MPI test launches this file under ``mpiexec -n N python -m mpi4py`` with one case."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here
from ulps import spacing_lowp

CASE_TIMEOUT = 90


@pytest.mark.spawns
@pytest.mark.parametrize("n", [3, 4])
def test_weighted_half_sum_is_float32_rounded_once(n):
    pytest.importorskip("mpi4py")
    run_case(__file__, "weighted_half", n, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def case_weighted_half(comm) -> None:
    from optkern import optim
    from optkern.distributed import Communicator, DistributedOptimizer

    try:
        import ml_dtypes

        dtypes = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
    except ImportError:
        dtypes = [np.dtype(np.float16)]
    rows = np.arange(1, comm.size + 1) * 7  # uneven shards
    w = float(rows[comm.rank] / rows.sum())
    m = 4000
    for dt in dtypes:
        rng = np.random.default_rng(300 + comm.rank)
        g0 = (rng.standard_normal(m) * 3).astype(np.float32).astype(dt)
        every = np.stack(comm.allgather_object(g0.astype(np.float64)))
        weights = np.array(comm.allgather_object(w))
        want = weights @ every  # float64
        scale = np.abs(weights) @ np.abs(every)
        allow = 0.5 * spacing_lowp(want, dt) + 8 * 2.0**-24 * scale
        for ordered in (True, False):
            c = Communicator(comm.mpi, backend="mpi", ordered=ordered)
            for name, direct_kb in (("packed", float("inf")), ("direct", 1e-3)):
                sgd = optim.SGD([np.zeros(m, dt)], lr=1.0, master_weights=True)
                opt = DistributedOptimizer(sgd, c, direct_kb=direct_kb, grad_weight=w)
                g = [g0.copy()]
                opt.synchronize(g)
                err = np.abs(g[0].astype(np.float64) - want)
                bad = int(np.count_nonzero(err > allow))
                assert bad == 0, f"{dt} ordered={ordered} {name}: {bad} of {m} elements off the weighted sum"


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
