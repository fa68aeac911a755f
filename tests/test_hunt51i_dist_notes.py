"""Hunt 51i: the refusing ranks' notes (``optkern.distributed.no_comm``) on 3 ranks.

A rank waiting in a header of a ``Split`` of the world probed for notes from any sender and only
ever saw the first one queued: a note from a rank outside its communicator (another refusal) hid
a member's note behind it, and the rank waited forever. And a rank that read a member's note
joined the refusing rank's ``COMM_WORLD`` header with no deadline: where a third rank worked in a
communicator without the refusing rank, it waited until that rank came to the world, long after
the refusing rank had given up. Each case runs on 3 ranks under ``mpiexec``; a hang is a failure
(the launch's timeout).
"""

from __future__ import annotations

import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 20  # s: a passing case takes a few seconds
OWN = "comm: expected an mpi4py.MPI.Comm or a Communicator, got str"


def _launch(case: str, *args: str) -> None:
    pytest.importorskip("mpi4py")
    run_case(__file__, case, 3, *args, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_a_members_note_behind_an_outsiders_is_read():
    _launch("behind")


@pytest.mark.spawns
@pytest.mark.parametrize("then", ["world", "split"])
def test_joining_a_refusal_gives_up_where_a_rank_works_elsewhere(then):
    _launch("busy", then)


@pytest.mark.spawns
def test_a_checked_collective_of_a_split_reads_a_members_note():
    _launch("checked")


def _world_works(comm) -> None:
    """Every rank in one allreduce of the world (nothing left pending or queued)."""
    import numpy as np

    from optkern.distributed import Communicator

    x = np.full(5, comm.rank + 1.0)
    Communicator(backend="mpi").allreduce(x)
    np.testing.assert_array_equal(x, np.full(5, 6.0))


def case_behind(comm) -> None:
    """A = ranks {0, 1}. Rank 2 refuses first (no member of A: its note stays queued on rank 0),
    rank 1 half a second later; rank 0, in A's first header, reads rank 1's note and all three
    raise together in the world's header (rank 0: rank 1's error)."""
    import time

    from mpi4py import MPI

    from optkern.distributed import Communicator, no_comm

    a = MPI.COMM_WORLD.Split(0 if comm.rank < 2 else 1, comm.rank)
    wait, no_comm.WAIT_S = no_comm.WAIT_S, 8.0  # (rank 2 still waits when rank 1 refuses)
    try:
        if comm.rank == 2:
            with raises(TypeError, OWN):
                Communicator("x")
        elif comm.rank == 1:
            time.sleep(0.5)
            with raises(TypeError, OWN):
                Communicator("x")
        else:
            with raises(TypeError, OWN + " (on rank 1: no rank goes on without it)"):
                Communicator(a)
            assert len(no_comm._left) == 1  # (A's header request kept alive, not freed while active)
    finally:
        no_comm.WAIT_S = wait
    _world_works(comm)


def case_busy(comm, then: str) -> None:
    """A = ranks {0, 1}. Rank 1 refuses; rank 0, in A's header, reads its note and joins the world's
    header, where rank 2 does not come for 4 s (it works in a communicator of its own): rank 0
    gives up after WAIT_S (1 s here) with rank 1's error, as rank 1 does with its own. Then all
    meet in the world: the headers given up are completed there and every rank raises. ``then``:
    rank 0's next call, in the world or in A again (where rank 1's note, read before, is met
    again: the header given up is completed first, the note taken there, no second one awaited)."""
    import time

    import numpy as np
    from mpi4py import MPI

    from optkern.distributed import Communicator, no_comm

    a = MPI.COMM_WORLD.Split(0 if comm.rank < 2 else 1, comm.rank)
    wait, no_comm.WAIT_S = no_comm.WAIT_S, 1.0
    try:
        t0 = time.monotonic()
        if comm.rank == 1:
            with raises(TypeError, OWN):
                Communicator("x")
        elif comm.rank == 0:
            with raises(TypeError, OWN + " (on rank 1: no rank goes on without it) (not every rank came"):
                Communicator(a)
            assert time.monotonic() - t0 < 3.0, time.monotonic() - t0  # (rank 2 came only after 4 s)
        else:
            alone = Communicator(MPI.COMM_SELF.Dup())
            while time.monotonic() - t0 < 4.0:
                x = np.ones(3)
                alone.allreduce(x)
                time.sleep(0.05)
            np.testing.assert_array_equal(x, np.ones(3))
        late = {
            0: OWN + " (on rank 1: no rank goes on without it) (reported after",
            1: OWN + " (this rank's refusal, reported after",
            2: OWN + " (on rank 1: no rank goes on without it)",
        }
        with raises(TypeError, late[comm.rank]):
            Communicator(a if comm.rank == 0 and then == "split" else None)
    finally:
        no_comm.WAIT_S = wait
    _world_works(comm)


def case_checked(comm) -> None:
    """A = ranks {0, 1}, a Communicator on both. Rank 1 then refuses a comm while rank 0 makes a
    checked allreduce in A (its header waited without reading notes) and rank 2 makes a
    Communicator of the world: all three raise rank 1's error (rank 1 its own)."""
    import numpy as np
    from mpi4py import MPI

    from optkern.distributed import Communicator, no_comm

    split = MPI.COMM_WORLD.Split(0 if comm.rank < 2 else 1, comm.rank)
    a = Communicator(split) if comm.rank < 2 else None
    wait, no_comm.WAIT_S = no_comm.WAIT_S, 8.0
    try:
        if comm.rank == 1:
            with raises(TypeError, OWN):
                Communicator("x")
        elif comm.rank == 0:
            with raises(TypeError, OWN + " (on rank 1: no rank goes on without it)"):
                a.allreduce(np.ones(3))
        else:
            with raises(TypeError, OWN + " (on rank 1: no rank goes on without it)"):
                Communicator()
    finally:
        no_comm.WAIT_S = wait
    _world_works(comm)


if __name__ == "__main__":
    import sys

    run_here(globals(), sys.argv[1:])
