"""Hunt 55g: the Communicator's collectives refuse a NumPy masked array by name, on every rank, before
anything is sent or written, as every other optkern argument does (``_foreign.refuse_masked``).

They took its data and ignored the mask: ``allreduce`` of a masked array summed the data, then
wrote the result back through MaskedArray's own assignment, which skips masked entries (so rank 1's
masked entry came back holding rank 0's value: 1.0 on both ranks where the data were 1.0 and 2.0),
``allgather`` / ``reduce_scatter`` returned plain arrays of the masked data. Run on 2 ranks under
``mpiexec``; a hang is a failure (the launch's timeout).
"""

from __future__ import annotations

import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 60  # s: a passing launch takes well under 15 s
MSG = "expected a numpy.ndarray, got a masked array"


@pytest.mark.spawns
def test_collectives_refuse_masked_arrays_on_every_rank():
    pytest.importorskip("mpi4py")
    run_case(__file__, "masked", 2, timeout=CASE_TIMEOUT)


def case_masked(comm) -> None:
    """Each collective with a masked x (or out), on every rank and on rank 1 only: TypeError naming
    it on rank 1 (every rank where both hold one), the same error 'on rank 1' elsewhere; nothing
    written; then a plain call gives the right sums (the ranks still pair up)."""
    import numpy as np

    def masked():
        return np.ma.array(np.full(4, comm.rank + 1.0, np.float32), mask=[0, 1, 0, 0])

    calls = {
        "allreduce": lambda x, o: comm.allreduce(x),
        "bcast": lambda x, o: comm.bcast(x, root=1),
        "allgather": lambda x, o: comm.allgather(x, out=o),
        "reduce_scatter": lambda x, o: comm.reduce_scatter(x, out=o),
    }
    for name, call in calls.items():
        for everywhere in (True, False):
            x = masked() if everywhere or comm.rank == 1 else np.full(4, 1.0, np.float32)
            before = np.ma.getdata(x).copy()
            text = f"x: {MSG}" if everywhere or comm.rank == 1 else "(on rank 1)"
            with raises(TypeError, text):
                call(x, None)
            np.testing.assert_array_equal(np.ma.getdata(x), before)
        if name in ("allgather", "reduce_scatter"):  # (a masked out: refused by name, unwritten)
            n = 8 if name == "allgather" else 2
            out = np.ma.array(np.zeros(n, np.float32), mask=[1] + [0] * (n - 1))
            with raises(TypeError, f"out: {MSG}"):
                call(np.full(4, 1.0, np.float32), out)
            np.testing.assert_array_equal(out.data, np.zeros(n, np.float32))
    y = np.full(4, comm.rank + 1.0, np.float32)
    comm.allreduce(y)
    np.testing.assert_array_equal(y, np.full(4, 3.0, np.float32))


if __name__ == "__main__":
    import sys

    run_here(globals(), sys.argv[1:])
