"""Hunt 52d: the state a refusal of a ``comm`` leaves behind (``optkern.distributed.no_comm``).

A member of a ``Dup`` / ``Split`` that gave up its header there for a refusing rank's note kept that
header posted (MPI cannot cancel a collective): the communicator's next call paired each rank's
header with the other's previous one, the call after it waited forever. And a refusing rank that
had given up waiting went on to a header of a ``Split`` while its note was still queued: a member
arriving late read that stale note, joined the world's header and waited in the allgather after
it, while the refusing rank waited in the ``Split``: both hung. Each case runs under ``mpiexec``
(a hang is a failure: the launch's timeout), then checks the next collectives' numbers.
"""

from __future__ import annotations

import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 40  # s: a passing launch takes well under 15 s
OWN = "comm: expected an mpi4py.MPI.Comm or a Communicator, got str"
LATE = " (this rank's refusal, reported after no_comm.WAIT_S seconds"


@pytest.mark.spawns
def test_a_dup_after_a_refusal_pairs_up_again_on_two_ranks():
    pytest.importorskip("mpi4py")
    run_case(__file__, "two", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_a_dup_after_a_refusal_pairs_up_again_on_three_ranks():
    pytest.importorskip("mpi4py")
    run_case(__file__, "three", 3, timeout=CASE_TIMEOUT)


def _sums(comm, c, times: int = 2) -> None:
    """``times`` allreduces in ``c`` (a Communicator of every rank), then one in the world: the
    right sums on every rank (1 + 2 + ... + world)."""
    import numpy as np

    from optkern.distributed import Communicator, no_comm

    want = comm.size * (comm.size + 1) / 2
    for i in range(times):
        x = np.full(7, comm.rank + 1.0)
        c.allreduce(x)
        np.testing.assert_array_equal(x, np.full(7, want), err_msg=f"call {i}")
    x = np.full(3, comm.rank + 1.0)
    Communicator(backend="mpi").allreduce(x)
    np.testing.assert_array_equal(x, np.full(3, want))
    assert no_comm._left == [] and no_comm._pending == [], (no_comm._left, no_comm._pending)


def _refuse_then(comm, make, late: bool) -> None:
    """Rank 1 refuses a comm; every other rank calls ``make()`` (a call in a Dup of the world): at
    once (it reads rank 1's note and gives up its header there), or, ``late``, after rank 1 gave up
    waiting (WAIT_S shortened): then rank 1's next call is in that Dup too, and reports its refusal
    first. Every rank raises rank 1's error."""
    import time

    from optkern.distributed import Communicator, no_comm

    wait, no_comm.WAIT_S = no_comm.WAIT_S, (0.5 if late else 10.0)
    try:
        if comm.rank == 1:
            with raises(TypeError, OWN):
                Communicator("x")
        elif late:
            time.sleep(1.5)
        if comm.rank != 1 or late:
            with raises(TypeError, OWN + (LATE if comm.rank == 1 else " (on rank 1: no rank goes on without it)")):
                make()
    finally:
        no_comm.WAIT_S = wait


def case_two(comm) -> None:
    """On 2 ranks, a Dup of the world: a header given up there (rank 0 read the note at once) is
    completed by the next call, which goes on with the right numbers; a late rank's call in the Dup
    raises with the refusing rank's (no hang), and the Dup goes on too."""
    import numpy as np
    from mpi4py import MPI

    from optkern.distributed import Communicator

    dup = MPI.COMM_WORLD.Dup()
    _refuse_then(comm, lambda: Communicator(dup), late=False)
    _sums(comm, Communicator(dup))
    c = Communicator(dup)
    _refuse_then(comm, lambda: c.allreduce(np.ones(3)), late=False)
    _sums(comm, c)
    _refuse_then(comm, lambda: Communicator(dup), late=True)
    _sums(comm, Communicator(dup))


def case_three(comm) -> None:
    """On 3 ranks, a Dup of the world: ranks 0 and 2 both give their header up for rank 1's note;
    the next calls there pair up and give the right numbers on every rank."""
    from mpi4py import MPI

    from optkern.distributed import Communicator

    dup = MPI.COMM_WORLD.Dup()
    _refuse_then(comm, lambda: Communicator(dup), late=False)
    _sums(comm, Communicator(dup))
    _refuse_then(comm, lambda: Communicator(dup), late=True)
    _sums(comm, Communicator(dup))


if __name__ == "__main__":
    import sys

    run_here(globals(), sys.argv[1:])
