"""``clip_grad_norm_(shard, comm=)`` on a ShardedOptimizer's ``synchronize`` list: one allgather.

Made bit for bit with the one-process clip (45th session), the norm of a ``ShardGrads`` took three
collectives after the call's header: an allgather of the ranks' edges (the elements of the chunks
a rank boundary cuts), an allreduce of the counts of partial sums and an allgather of the sums --
while the counts and the edges' lengths are known to every rank from the layout. Now one allgather
carries each rank's sums and its edges, and every rank sums the cut chunks itself. At p other than
1 and 2 the global max |g| (the norm at p = inf, the terms' scale else) took one more allreduce:
NumPy ranks now carry it in the call's header (the agreement's allreduce, which every rank makes).
A clip makes 2 collectives at p = 1, 2, 3, 7 (were 4, 4, 5, 5) and 1 at p = inf (was 2), the ZeRO
step with clipping 6 (was 8) and 5 (was 6); the norm, the clipped gradients and the step stay the
one process's to the bit (tests/test_hunt45c_zero_clip.py), a NaN gradient on one rank a NaN norm
on every rank.
"""

from __future__ import annotations

import math
import sys
from collections import Counter

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 120  # s: a hang is a failure


class _Counted:
    """An mpi4py communicator whose collective calls are counted, with those of optkern's own
    duplicate of it (where the headers travel: ``optkern.distributed.private``)."""

    def __init__(self, comm, calls=None) -> None:
        self._comm, self.calls = comm, Counter() if calls is None else calls

    def __getattr__(self, name: str):
        attr = getattr(self._comm, name)
        if name == "Get_attr":  # (the duplicate, an attribute of the communicator: counted alike)
            return lambda key: None if attr(key) is None else _Counted(attr(key), self.calls)
        if not callable(attr) or name.startswith(("Get_", "Is_")):
            return attr

        def call(*a, **k):
            self.calls[name] += 1
            return attr(*a, **k)

        return call


def case_calls(comm) -> None:
    import optkern
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    # (params past the kernel's chunk of 65536, cut by the rank boundaries at 2 and 4 ranks)
    shapes = ((70001,), (3,), (0,), (65537,))
    rng = np.random.default_rng(0)
    for p, want in ((2.0, 2), (1.0, 2), (3.0, 2), (7.0, 2), (math.inf, 1)):
        ps = [np.linspace(-1, 1, math.prod(s)).reshape(s) for s in shapes]
        ref = [a.copy() for a in ps]
        z = ShardedOptimizer(optim.SGD, ps, comm, lr=0.5)
        grads = [rng.standard_normal(s) for s in shapes]
        shard = z.synchronize(grads)
        counted = comm.mpi = _Counted(comm.mpi)
        try:
            total = optkern.clip_grad_norm_(shard, 1e-3, norm_type=p, comm=comm)
        finally:
            comm.mpi = counted._comm
        assert sum(counted.calls.values()) == want, (p, dict(counted.calls))
        with z.skip_synchronize():
            z.step()
        assert total == optkern.clip_grad_norm_(grads, 1e-3, norm_type=p), p
        optim.SGD(ref, lr=0.5).step(grads)
        assert all(np.array_equal(a, b) for a, b in zip(ps, ref)), p
    # a plain list of each rank's own arrays at p = inf: the header alone; a NaN on the last rank
    # only is the NaN norm of every rank (as MPI's max, which drops a NaN or not by the ranks' order,
    # was made to propagate it); an inf the inf norm
    for bad in (0.0, math.nan, math.inf):
        mine = np.full(5, comm.rank + 1.0)
        mine[2] = bad if comm.rank == comm.size - 1 else mine[2]
        counted = comm.mpi = _Counted(comm.mpi)
        try:
            total = optkern.clip_grad_norm_([mine], 1e9, norm_type="inf", comm=comm)
        finally:
            comm.mpi = counted._comm
        assert sum(counted.calls.values()) == 1, dict(counted.calls)
        want = comm.size + 0.0 if bad == 0.0 else bad
        assert total == want or (math.isnan(want) and math.isnan(total)), (bad, total)


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 4])
def test_the_sharded_norm_makes_one_allgather(n):
    pytest.importorskip("mpi4py")
    run_case(__file__, "calls", n, timeout=CASE_TIMEOUT)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
