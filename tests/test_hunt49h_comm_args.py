"""``Communicator(...)`` with an argument refused on one rank only raises on every rank.

Its ``backend``, ``ordered`` and ``cuda_aware`` were checked before the set-up's exchange (an
allgather of every rank's backend and ordering): a rank alone with ``backend='foo'`` or
``ordered='yes'`` raised there while the others waited in the allgather forever (the job hung
until its timeout). Now the check's outcome goes into that allgather: the refusing rank raises its
own error, the others the same type naming it and the rank, and the ranks' next collectives pair up.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure


def case_args(comm) -> None:
    from optkern.distributed import Communicator

    last = comm.size - 1
    bad = [
        (dict(backend="foo"), ValueError, "backend: expected 'auto', 'mpi' or 'nccl', got 'foo'"),
        (dict(ordered="yes"), TypeError, "ordered:"),
        (dict(cuda_aware=2), TypeError, "cuda_aware:"),
    ]
    for kw, exc, text in bad:
        with pytest.raises(exc) as info:
            Communicator(comm.mpi, **(kw if comm.rank == last else {}))
        said = str(info.value)
        assert text in said, said
        assert said.endswith(f"(on rank {last})") == (comm.rank != last), said  # (the others name it)
    # the ranks' collectives still pair up, and the arguments alike still work
    for kw in (dict(backend="mpi", ordered=True), {}):  # ({}: backend 'auto', which asks for NCCL)
        c = Communicator(comm.mpi, **kw)
        x = np.full(3, float(c.rank + 1))
        c.allreduce(x)
        assert x.tolist() == [comm.size * (comm.size + 1) / 2] * 3


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 3])
def test_an_argument_refused_on_one_rank_raises_on_every_rank(n):
    pytest.importorskip("mpi4py")
    run_case(__file__, "args", n, timeout=CASE_TIMEOUT)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
