"""Ranks that disagree where nothing compared them: a hang or a silent divergence, now an error on
every rank.

- ``Communicator(ordered=True)`` on some ranks only: their reductions are a gather of rows, the
  others' MPI's allreduce; the first step of a DistributedOptimizer or ShardedOptimizer waited
  forever (killed by the launch's timeout). The wrappers' set-up now compares the ranks'
  Communicators (in the exchange it makes anyway) and raises ValueError on every rank.
- ``broadcast_params(p, comm, root=...)`` and ``ShardedOptimizer.consolidate_state_dict(to=...)`` with
  a valid root that differs between ranks (1 on rank 0, 0 on rank 1): each rank waited for its
  root's broadcast / gather forever. The roots are now compared in the exchange each makes first.
- ShardedOptimizer shards of two checkpoints (rank 0's from step 1, rank 1's from step 2) loaded
  and stepped silently: the slices of one group stepped with other bias corrections (Adam, lr 0.1,
  6 ones with gradient 1: 0.6835 on rank 0's elements, 0.7 on the others' after the next step).
  The ranks' step counts per group are now compared after the load: ValueError on every rank,
  every rank's state as it was.

Each test launches this file under ``mpiexec -n N python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.spawns
def test_communicators_ordered_on_some_ranks_only_raise_at_set_up():
    run_case(__file__, "ordered_apart", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_roots_that_differ_between_ranks_raise_on_every_rank():
    run_case(__file__, "roots_apart", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_shards_of_two_checkpoints_are_refused_on_every_rank():
    run_case(__file__, "mixed_shards", 3, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def case_ordered_apart(comm) -> None:
    from optkern import optim
    from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

    # (since session 35 the Communicator's construction compares them: it raises first)
    with _raises(ValueError, "ordered: True on rank 0, False on rank 1"):
        Communicator(comm.mpi, backend="mpi", ordered=comm.rank == 0)
    c = Communicator(comm.mpi, backend="mpi")
    c.ordered = comm.rank == 0  # (set after construction: the wrappers compare them again)
    text = "comm: ordered=False on rank 1, ordered=True on rank 0"
    p = [np.ones(6)]
    with _raises(ValueError, text):
        DistributedOptimizer(optim.SGD(p, lr=0.1), c)
    with _raises(ValueError, text):
        ShardedOptimizer(optim.SGD, p, c, lr=0.1)
    d = DistributedOptimizer(optim.SGD(p, lr=0.1), comm)  # alike: steps
    d.step([np.full(6, 1.0 + comm.rank)])
    assert np.array_equal(p[0], np.full(6, 0.85))


def case_roots_apart(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer, broadcast_params

    r = comm.rank
    p = [np.full(4, float(r))]
    with _raises(ValueError, "root: 0 on rank 1, 1 on rank 0"):
        broadcast_params(p, comm, root=1 if r == 0 else 0)
    assert np.array_equal(p[0], np.full(4, float(r))), "a refused broadcast wrote"
    broadcast_params(p, comm, root=1)
    assert np.array_equal(p[0], np.full(4, 1.0))
    z = ShardedOptimizer(optim.Adam, p, comm, lr=0.1)
    z.step([np.ones(4)])
    for to, text in (((1, 0), "to=0 on rank 1, to=1 on rank 0"), ((0, None), "to=None on rank 1, to=0 on rank 0")):
        with _raises(ValueError, f"gather_object: {text}"):
            z.consolidate_state_dict(to=to[r])
    got = z.consolidate_state_dict(to=1)
    assert (got is None) == (r == 0) and (got is None or got["state"][0]["step"] == 1)


def case_mixed_shards(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer
    from optkern.distributed.agreement import state_digest

    r = comm.rank
    for cls, kw in ((optim.Adam, {}), (optim.NAdam, {}), (optim.AdagradNorm, {"lr": 0.5})):
        p = [np.ones(5), np.ones(2)]  # (7 elements on 3 ranks: rank 2 holds one, of the second array)
        z = ShardedOptimizer(cls, [{"params": p[:1]}, {"params": p[1:]}], comm, **kw)
        g = [np.ones(5), np.ones(2)]
        z.step(g)
        first = z.state_dict()
        z.step(g)
        second = z.state_dict()
        now = state_digest(second)
        with _raises(ValueError, "loaded a shard of param_groups["):
            z.load_state_dict(first if r == 1 else second)
        assert state_digest(z.state_dict()) == now, f"{cls.__name__}: a refused load changed the state"
        fresh = ShardedOptimizer(cls, [{"params": [np.ones(5)]}, {"params": [np.ones(2)]}], comm, **kw)
        with _raises(ValueError, "rank 0 at no state"):  # (rank 0's shard saved before any step)
            z.load_state_dict(fresh.state_dict() if r == 0 else first)
        z.load_state_dict(first)  # one checkpoint on every rank: loads, steps on alike
        z.step(g)
        got = comm.allgather_object([a.tobytes() for a in p])
        assert all(x == got[0] for x in got), "the ranks' params differ"


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
