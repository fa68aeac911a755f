"""optkern.distributed, the 41st hunt (2 ranks).

* The collectives took arrays whose elements MPI cannot move: byte-swapped (``>f4``: each rank's
  own checks and the ranks' agreement passed, then mpi4py raised ``BufferError: format string
  '>f' with non-native byte order``), object, string, datetime, structured and float8 arrays
  (``KeyError: "cannot map 'O' to MPI datatype"``, a DLPack BufferError): exceptions that name
  no argument, of types a caller catching TypeError / ValueError misses. ``broadcast_params``
  broadcast the arrays before such a one, then raised half way (the first arrays overwritten).
  Now each collective refuses them as it refuses a non-contiguous array (TypeError naming ``x``
  / ``out`` / ``arrays[i]``), on every rank, before anything moves.

The tests launch this file under ``mpiexec -n N python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.spawns
def test_collectives_refuse_arrays_mpi_cannot_move_naming_them():
    run_case(__file__, "dtypes", 2, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _unmovable(r: int) -> list:
    import ml_dtypes

    return [
        (np.arange(4) + r).astype(">f4"),
        (np.arange(4) + r).astype(">i8"),
        np.array([1.0 + r, 2, 3, 4], dtype=object),
        np.array(["a", "b", "c", "d"]),
        np.arange(4).astype("M8[s]"),
        np.zeros(4, dtype=[("a", "<f4"), ("b", "<i4")]),
        np.arange(4).astype(ml_dtypes.float8_e4m3fn),
    ]


def case_dtypes(comm) -> None:
    from optkern.distributed import Communicator, broadcast_params

    r = comm.rank
    for ordered in (False, True):
        c = Communicator(comm.mpi, ordered=ordered)
        for x in _unmovable(r):
            before = x.copy()
            for call in (
                lambda x=x, c=c: c.allreduce(x, "sum"),
                lambda x=x, c=c: c.reduce_scatter(x, "sum"),
                lambda x=x, c=c: c.allgather(x[:2]),
                lambda x=x, c=c: c.bcast(x, 0),
                lambda x=x, c=c: c.allreduce(x, "sum", check=False),
            ):
                with raises(TypeError, "x: "):
                    call()
                assert x.tobytes() == before.tobytes(), x.dtype
        # as an out= array beside a movable x
        good = np.arange(4, dtype=np.float32)
        with raises(TypeError, "out: "):
            c.reduce_scatter(good, "sum", out=np.zeros(2, ">f4"))
        with raises(TypeError, "out: "):
            c.allgather(good[:2], out=np.zeros(4, ">f4"))
        # the native arrays of every kind that moves still move
        for dt in (np.float32, np.int64, np.bool_, np.float16, np.longdouble):
            x = (np.arange(4) + r).astype(dt)
            c.allreduce(x, "max")
            assert np.array_equal(x, (np.arange(4) + comm.size - 1).astype(dt)), dt
    # broadcast_params: refused before any array is broadcast
    arrays = [np.full(3, 1.0 + r), (np.arange(3) + r).astype(">f8")]
    with raises(TypeError, "arrays[1]: "):
        broadcast_params(arrays, comm)
    assert np.array_equal(arrays[0], np.full(3, 1.0 + r))


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
