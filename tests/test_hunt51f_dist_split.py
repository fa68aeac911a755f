"""Hunt 51f: a bad ``comm`` on one rank while the others pass a ``Dup`` or ``Split`` of
``COMM_WORLD`` (not the world itself) raises on every rank.

The refusing rank reports into ``COMM_WORLD``'s header (``optkern.distributed.no_comm``), but the
others waited in their first header on the communicator they were given, which the refusing rank
never joins: it gave up after ``no_comm.WAIT_S`` (30 s) and raised alone, the others waited
forever. Now it also sends each other rank a note; a rank waiting in a header of a communicator
the refusing rank belongs to reads it, joins the world's header and raises the refusing rank's
error (same type, saying which rank). Each case is launched on 2 ranks under ``mpiexec``; a hang is
a failure (the launch's timeout, well under ``WAIT_S``).
"""

from __future__ import annotations

import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 20  # s: under no_comm.WAIT_S (a passing case takes a few seconds)
OWN = "comm: expected an mpi4py.MPI.Comm or a Communicator, got str"


def _launch(case: str, *args: str) -> None:
    pytest.importorskip("mpi4py")
    run_case(__file__, case, 2, *args, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
@pytest.mark.parametrize("how", ["dup", "split", "split_dup"])
def test_a_bad_comm_beside_a_derived_communicator_raises_on_every_rank(how):
    _launch("derived", how)


@pytest.mark.spawns
def test_a_refusal_beside_a_communicator_without_that_rank_does_not_stop_it():
    _launch("outside")


def _derived(MPI, how: str):
    world = MPI.COMM_WORLD
    if how == "dup":
        return world.Dup()
    if how == "split":
        return world.Split(0, world.Get_size() - world.Get_rank())  # (the ranks in another order)
    return world.Split(0, world.Get_rank()).Dup()


def case_derived(comm, how: str) -> None:
    """Rank 1 passes no communicator; rank 0 a communicator derived from the world, to
    ``Communicator`` and to a wrapper's set-up; then both go on together in the world."""
    import numpy as np
    from mpi4py import MPI

    from optkern import optim
    from optkern.distributed import Communicator, DistributedOptimizer

    for make in (
        lambda c: Communicator(c),
        lambda c: DistributedOptimizer(optim.SGD([np.zeros(3, np.float32)], lr=0.1), comm=c),
    ):
        mine = _derived(MPI, how)  # (collective: made on both ranks)
        if comm.rank == 1:
            with raises(TypeError, OWN):
                make("x")
        else:
            with raises(TypeError, OWN + " (on rank 1"):
                make(mine)
    x = np.full(5, comm.rank + 1.0)
    Communicator(backend="mpi").allreduce(x)
    np.testing.assert_array_equal(x, np.full(5, 3.0))


def case_outside(comm) -> None:
    """Rank 1 refuses its comm while rank 0 works in a communicator of its own (``COMM_SELF``'s
    Dup): rank 0 is not stopped by the note (rank 1 is no member of it), and reads it nowhere
    else; rank 1 gives up waiting (WAIT_S shortened) and raises alone, as before. Then both meet
    in the world: rank 1's pending header is completed there and both raise, as a late rank does."""
    import time

    import numpy as np
    from mpi4py import MPI

    from optkern.distributed import Communicator, no_comm

    wait, no_comm.WAIT_S = no_comm.WAIT_S, 1.0
    try:
        if comm.rank == 1:
            with raises(TypeError, OWN):
                Communicator("x")
        else:
            alone = Communicator(MPI.COMM_SELF.Dup())
            for _ in range(20):
                x = np.ones(3)
                alone.allreduce(x)
                time.sleep(0.1)
            np.testing.assert_array_equal(x, np.ones(3))
        if comm.rank == 1:
            with raises(TypeError, OWN + " (this rank's refusal, reported after no_comm.WAIT_S seconds"):
                Communicator()
        else:
            with raises(TypeError, OWN + " (on rank 1"):
                Communicator()
    finally:
        no_comm.WAIT_S = wait


if __name__ == "__main__":
    import sys

    run_here(globals(), sys.argv[1:])
