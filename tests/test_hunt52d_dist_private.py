"""Hunt 52d: the user's own mpi4py calls between optkern's never meet what a refusal left pending.

optkern's headers, and a refusing rank's notes, travelled in the user's communicators: after a
refusal whose wait ran out, the user's next ``Iallreduce`` in ``COMM_WORLD`` returned the pending
refusal header's values (9.9e11, -9.9e11, 1, ... instead of the sums), and a ``recv(ANY_SOURCE,
ANY_TAG)`` there returned the refusing rank's note instead of the user's message (then optkern's
next call waited for that note forever). Headers now travel in a duplicate of each communicator
(``optkern.distributed.private``), made at its first header every member joined. Run on 2 ranks
under ``mpiexec``; a hang is a failure (the launch's timeout).
"""

from __future__ import annotations

import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 40  # s: a passing launch takes well under 15 s
OWN = "comm: expected an mpi4py.MPI.Comm or a Communicator, got str"


@pytest.mark.spawns
def test_raw_calls_between_optkerns_are_the_users_own():
    pytest.importorskip("mpi4py")
    run_case(__file__, "raw", 2, timeout=CASE_TIMEOUT)


def _raw(comm, mpi_comm) -> None:
    """The user's own calls in ``mpi_comm`` (every rank of the world): a nonblocking and a blocking
    reduction, a broadcast, and a message from rank 1 taken by rank 0 with any source and tag."""
    import numpy as np
    from mpi4py import MPI

    x = np.full(24, comm.rank + 1.0)
    mpi_comm.Iallreduce(MPI.IN_PLACE, x, op=MPI.SUM).Wait()
    np.testing.assert_array_equal(x, np.full(24, 3.0))
    assert mpi_comm.allreduce(comm.rank + 1) == 3
    assert mpi_comm.bcast(("user", comm.rank), root=1) == ("user", 1)
    if comm.rank == 1:
        mpi_comm.send("user message", dest=0, tag=5)
    else:
        assert mpi_comm.recv(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG) == "user message"


def _sums(comm, c) -> None:
    import numpy as np

    x = np.full(7, comm.rank + 1.0)
    c.allreduce(x)
    np.testing.assert_array_equal(x, np.full(7, 3.0))


def case_raw(comm) -> None:
    """Rank 1 refuses a comm twice: once while rank 0 is busy (its wait runs out: a header pending
    in the world, a note queued at rank 0), once while rank 0 waits in a Dup's header (given up
    there). Between each and the next optkern call, the user's own calls in the world and in the
    Dup: each gets its own numbers and messages; then optkern's calls raise (the late one) and go
    on with the right sums."""
    import time

    import numpy as np
    from mpi4py import MPI

    from optkern.distributed import Communicator, no_comm, private

    world, dup = MPI.COMM_WORLD, MPI.COMM_WORLD.Dup()
    c = Communicator(dup)
    assert private.channel(world) is not world and private.channel(dup) is not dup  # (made: first headers)
    wait, no_comm.WAIT_S = no_comm.WAIT_S, 0.5
    try:
        if comm.rank == 1:
            with raises(TypeError, OWN):
                Communicator("x")
        else:
            time.sleep(1.5)
        _raw(comm, world)
        with raises(TypeError, OWN):  # (the refusal told late: every rank raises)
            Communicator()
        no_comm.WAIT_S = 10.0
        if comm.rank == 1:
            with raises(TypeError, OWN):
                Communicator("x")
        else:
            with raises(TypeError, OWN + " (on rank 1"):
                c.allreduce(np.ones(3))
            assert len(no_comm._left) == 1
        _raw(comm, dup)
        _raw(comm, world)
    finally:
        no_comm.WAIT_S = wait
    _sums(comm, c)
    _sums(comm, Communicator())
    assert no_comm._left == [] and no_comm._pending == []
    dup.Free()  # (its duplicate freed with it)


if __name__ == "__main__":
    import sys

    run_here(globals(), sys.argv[1:])
