"""Arguments that differ between the ranks, or are refused on one rank only, raise on every rank.

1. ``Communicator(comm='x')`` (an intercommunicator, any non-communicator) on one rank raised
   there at once, while the ranks given a good communicator waited in their first exchange forever
   (``Communicator()``'s, a wrapper's set-up, a checked collective, an estimator's): the refusing
   rank had no communicator to report into. It now joins the others' header in ``COMM_WORLD``
   (``optkern.distributed.no_comm``): its own TypeError there, the same type naming it elsewhere.

Each MPI test launches this file under ``mpiexec -n 2 python -m mpi4py`` with one case (every rank
prints ``rank R: CASE ok``); a hang is a failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure (a passing case takes a few seconds)


def _launch(case: str) -> None:
    pytest.importorskip("mpi4py")
    run_case(__file__, case, 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_a_bad_comm_on_one_rank_raises_on_every_rank():
    _launch("bad_comm")


def case_bad_comm(comm) -> None:
    """Rank 1 passes no communicator; rank 0 the world, to each entry point that takes one."""
    from mpi4py import MPI

    from optkern import clip_grad_norm_, hessian, optim
    from optkern.distributed import (
        Communicator,
        DistributedOptimizer,
        ShardedOptimizer,
        broadcast_params,
        distributed,
        global_share,
    )

    bad = comm.rank == 1
    mine = "x" if bad else MPI.COMM_WORLD  # (None: clip_grad_norm_ is rank-local)
    own = "comm: expected an mpi4py.MPI.Comm or a Communicator, got str"
    told = own + " (on rank 1"  # (rank 0: rank 1's error, naming that rank)

    def each(fn) -> None:
        with raises(TypeError, own if bad else told):
            fn()

    each(lambda: Communicator(mine, backend="mpi"))
    each(lambda: Communicator(mine, ordered=True))
    each(lambda: DistributedOptimizer(optim.AdamW([np.ones(7)], lr=0.1), mine))
    each(lambda: ShardedOptimizer(optim.SGD, [np.ones(7)], mine, lr=0.1))
    each(lambda: distributed(np.eye(3), mine, 0.5))
    each(lambda: global_share(3, mine))
    each(lambda: broadcast_params([np.ones(3)], mine))
    each(lambda: clip_grad_norm_([np.ones(7)], 1.0, comm=mine))
    # the good rank already holds its objects: its first call's header meets the refusal
    c = Communicator(backend="mpi")
    H = distributed(np.diag(np.arange(1.0, 8.0)), c, 0.5)
    if bad:
        each(lambda: Communicator(mine))
        each(lambda: Communicator(mine))
    else:
        each(lambda: c.allreduce(np.ones(5)))
        each(lambda: hessian.trace(H, num_matvecs=4))
    # every rank refusing: each its own error, at once
    with raises(TypeError, "comm: expected an mpi4py.MPI.Comm or a Communicator, got int"):
        Communicator(3)
    # and the ranks go on together afterwards
    x = np.full(5, comm.rank + 1.0)
    Communicator(backend="mpi").allreduce(x)
    np.testing.assert_array_equal(x, np.full(5, 3.0))


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
