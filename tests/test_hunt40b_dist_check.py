"""The raw Communicator collectives compared no arguments across the ranks (40th hunt, b): sizes 3
and 4 gave MPI_ERR_TRUNCATE on one rank and uninitialized memory in the other's result; float32
against float64 read the bytes as other numbers; with ``ordered=True`` an ``op`` of ``"sum"`` on one
rank and ``"max"`` on the other gave each rank another result, no error; another root or ordering
per rank hung. Now (``check=True``, the default) every rank raises a ValueError naming the argument,
before anything is sent or written, and an argument refused on one rank raises on every rank; the
communicator stays usable. ``check=False`` (the wrappers') sends no header.

Each case runs under ``mpiexec -n 2 python -m mpi4py`` (this file) and prints ``rank R: CASE ok`` on
every rank; a hang is a failure (the launch's timeout)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.parametrize(
    "case", ["sizes", "dtypes", "ops_roots_orders", "one_rank_refuses", "calls_apart", "unchecked"]
)
@pytest.mark.spawns  # (Python orchestration: deselected under the sanitizer, .ci/sanitize)
def test_collectives_compare_the_ranks_arguments(case):
    pytest.importorskip("mpi4py")
    run_case(__file__, case, 2, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec; ``comm``: an ordered MPI Communicator) ------------------------


def _unordered(comm):
    from optkern.distributed import Communicator

    return Communicator(comm.mpi, backend="mpi", ordered=False)


def _still_works(comm) -> None:
    """After a refused call the ranks' next collectives still pair up."""
    x = np.full(4, comm.rank + 1.0)
    comm.allreduce(x)
    assert np.array_equal(x, np.full(4, 3.0)), x


def case_sizes(comm) -> None:
    want = "x: 4 float64 elements on rank 1, 3 float64 elements on rank 0"  # (the same on every rank)
    for c in (comm, _unordered(comm)):
        x = np.full(3 + comm.rank, 7.0)
        for op in ("sum", "max", "mean"):
            with raises(ValueError, want):
                c.allreduce(x, op)
            assert np.array_equal(x, np.full(3 + comm.rank, 7.0)), x  # (nothing written)
        out = np.full(2 * x.size, -1.0)
        with raises(ValueError, want):
            c.allgather(x, out)
        assert np.array_equal(out, np.full(2 * x.size, -1.0))
        with raises(ValueError, want):
            c.allgather(x)
        with raises(ValueError, want):
            c.bcast(x, 0)
        assert np.array_equal(x, np.full(3 + comm.rank, 7.0))
        big = np.full(4 + 2 * comm.rank, 1.0)  # (4 and 6: both multiples of the world size)
        with raises(ValueError, "x: 6 float64 elements on rank 1, 4 float64 elements on rank 0"):
            c.reduce_scatter(big)
        _still_works(c)
    # 16M elements against 16M + 1: MPI's large-message algorithms split the count (hung or truncated)
    x = np.ones(2**24 + comm.rank, np.float32)
    with raises(ValueError, f"x: {2**24 + 1} float32 elements on rank 1, {2**24} float32 elements on rank 0"):
        _unordered(comm).allreduce(x)
    _still_works(comm)


def case_dtypes(comm) -> None:
    dt = np.float64 if comm.rank == 0 else np.float32
    x = np.full(5, 2.0, dt)
    for c in (comm, _unordered(comm)):
        with raises(ValueError, "x: 5 float32 elements on rank 1, 5 float64 elements on rank 0"):
            c.allreduce(x)
        with raises(ValueError, "x: 5 float32 elements on rank 1, 5 float64 elements on rank 0"):
            c.bcast(x, 1)
        assert np.array_equal(x, np.full(5, 2.0, dt))
    _still_works(comm)


def case_ops_roots_orders(comm) -> None:
    x = np.array([1.0, 5.0]) * (comm.rank + 1)
    op = "sum" if comm.rank == 0 else "max"
    for c in (comm, _unordered(comm)):
        with raises(ValueError, "op: 'max' on rank 1, 'sum' on rank 0"):
            c.allreduce(x, op)
        with raises(ValueError, "op: 'max' on rank 1, 'sum' on rank 0"):
            c.allreduce(x, op, ordered=True)
        assert np.array_equal(x, np.array([1.0, 5.0]) * (comm.rank + 1))
        with raises(ValueError, "op: 'mean' on rank 1, 'sum' on rank 0"):
            c.reduce_scatter(np.ones(4), "sum" if comm.rank == 0 else "mean")
        with raises(ValueError, "ordered: False on rank 1, True on rank 0"):
            c.allreduce(x, ordered=comm.rank == 0)
        with raises(ValueError, "root: 1 on rank 1, 0 on rank 0"):
            c.bcast(x, root=comm.rank)
        assert np.array_equal(x, np.array([1.0, 5.0]) * (comm.rank + 1))
        _still_works(c)


def case_one_rank_refuses(comm) -> None:
    # (a rank alone with a bad argument raised while the other waited in the collective forever)
    x = np.ones(3)
    if comm.rank == 1:
        with raises(ValueError, "op: expected one of 'sum', 'mean', 'max', 'min', got 'prod'"):
            comm.allreduce(x, "prod")
    else:
        with raises(ValueError, "op: expected one of 'sum', 'mean', 'max', 'min', got 'prod' (on rank 1)"):
            comm.allreduce(x)
    ro = np.ones(3)
    ro.setflags(write=comm.rank == 0)
    with raises(ValueError, "x: array is read-only"):  # (rank 1's own; rank 0's names rank 1)
        comm.bcast(ro)
    with raises(ValueError, "root: must be < the world size 2"):
        comm.bcast(x, root=2 if comm.rank == 0 else 0)
    assert np.array_equal(x, np.ones(3))
    _still_works(comm)


def case_calls_apart(comm) -> None:
    # (another collective on each rank, or a wrapper's call on one: their headers pair up and differ)
    import optkern.clip as C

    x = np.ones(3)
    with raises(RuntimeError, "rank 0: Communicator.allreduce, rank 1: Communicator.bcast"):
        comm.allreduce(x) if comm.rank == 0 else comm.bcast(x)
    with raises(RuntimeError, "rank 0: Communicator.allgather, rank 1: clip_grad_norm_"):
        comm.allgather(x) if comm.rank == 0 else C.clip_grad_norm_([np.ones(3)], 1.0, comm=comm)
    assert np.array_equal(x, np.ones(3))
    _still_works(comm)


def case_unchecked(comm) -> None:
    # check=False: no header (each rank checks its own arguments); alike arguments reduce as before
    for c in (comm, _unordered(comm)):
        x = np.full(3, comm.rank + 1.0)
        c.allreduce(x, "sum", check=False)
        assert np.array_equal(x, np.full(3, 3.0))
        g = c.allgather(np.full(2, float(comm.rank)), check=False)
        assert np.array_equal(g, [0.0, 0.0, 1.0, 1.0])
        y = np.full(2, float(comm.rank))
        c.bcast(y, 1, check=False)
        assert np.array_equal(y, [1.0, 1.0])
        rs = c.reduce_scatter(np.arange(4.0) * (comm.rank + 1), "sum", check=False)
        assert np.array_equal(rs, (np.arange(4.0) * 3)[2 * comm.rank : 2 * comm.rank + 2])
        with raises(TypeError, "check: expected a bool, got str"):
            c.allreduce(x, check="no")


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
