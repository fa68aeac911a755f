"""float16 arrays through MPI where the MPI library has no float16 (Open MPI).

The first GPU machine's Open MPI refused every float16 buffer ("MPI_ERR_TYPE: invalid datatype"):
broadcasting float16 params, and the float16 gradient sums of data-parallel training, aborted the
job, while MPICH (here) reduces float16 itself. Now float16 moves as its uint16 bits (bcast,
allgather, the ordered reductions' alltoall), and an unordered float16 reduction through MPI runs
in float32, rounded to nearest even once (as bfloat16 always did): the same bits with any library.

Each case runs under ``mpiexec`` with mpi4py's float16 datatype replaced by MPI_DATATYPE_NULL, which
is what Open MPI gives: any float16 buffer reaching MPI fails the case.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 120  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.spawns
def test_float16_collectives_without_an_mpi_float16_type():
    run_case(__file__, "collectives", 4, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_float16_data_parallel_without_an_mpi_float16_type():
    run_case(__file__, "data_parallel", 2, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _rank_values(rank: int, n: int = 37) -> np.ndarray:
    return (np.sin(np.arange(n) * 0.7 + rank) * (1 + rank)).astype(np.float16)


def case_collectives(comm) -> None:
    from optkern.distributed import Communicator

    world, rank = comm.size, comm.rank
    rows = [_rank_values(r) for r in range(world)]
    x = _rank_values(rank)
    comm.bcast(x, root=2)
    assert x.tobytes() == rows[2].tobytes(), "bcast"
    got = comm.allgather(_rank_values(rank))
    assert got.tobytes() == np.concatenate(rows).tobytes(), "allgather"
    # unordered: the float32 sum of the float16 values, rounded once (exact in float32 here:
    # 4 float16 values of one binade span fit in float32's 24 bits)
    wide = sum(r.astype(np.float32) for r in rows)
    plain = Communicator(backend="mpi", ordered=False)
    y = _rank_values(rank)
    plain.allreduce(y, "sum")
    assert y.tobytes() == wide.astype(np.float16).tobytes(), "unordered allreduce"
    m = _rank_values(rank)
    plain.allreduce(m, "mean")
    assert m.tobytes() == (wide / np.float32(world)).astype(np.float16).tobytes(), "unordered mean"
    for op, fold in (("max", np.maximum), ("min", np.minimum)):
        e = _rank_values(rank)
        plain.allreduce(e, op)
        assert e.tobytes() == fold.reduce(rows).tobytes(), op
    blocks = np.concatenate([_rank_values(rank, 8 * world)])
    out = plain.reduce_scatter(blocks, "sum")
    full = sum(_rank_values(r, 8 * world).astype(np.float32) for r in range(world)).astype(np.float16)
    assert out.tobytes() == full[8 * rank : 8 * rank + 8].tobytes(), "unordered reduce_scatter"
    # ordered (comm): float16 rows moved as bits, added in rank order in float16
    z = _rank_values(rank)
    comm.allreduce(z, "sum")
    s = rows[0].copy()
    for r in rows[1:]:
        s += r
    assert z.tobytes() == s.tobytes(), "ordered allreduce"


def case_data_parallel(comm) -> None:
    """float16 params with float32 masters: broadcast, grads averaged through MPI (in float32)."""
    from optkern import optim
    from optkern.distributed import Communicator, DistributedOptimizer, broadcast_params

    rng = np.random.default_rng(comm.rank)
    params = [rng.standard_normal(n).astype(np.float16) for n in (300, 7, 1)]
    broadcast_params(params, comm)
    opt = DistributedOptimizer(optim.AdamW(params, lr=1e-2, master_weights=True), Communicator(comm.mpi))
    for _ in range(2):
        opt.step([rng.standard_normal(p.size).astype(np.float16) for p in params])
    got = comm.allgather_object([p.tobytes() for p in params])
    assert all(g == got[0] for g in got), "the ranks' params differ"
    assert all(np.isfinite(p).all() for p in params)


if __name__ == "__main__":
    from mpi4py import MPI

    MPI._typedict["e"] = MPI.DATATYPE_NULL  # (what Open MPI gives: float16 is no MPI type)
    run_here(globals(), sys.argv[1:])
