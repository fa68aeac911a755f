"""An estimator over ``hessian.with_progress(H, progress, total)`` (the public wrapper that reports
each product) of a distributed operator ``H`` lost the lockstep: the wrapper kept no link to ``H``'s
agreement, so an estimator refused on one rank before its first product (``num_matvecs=-1`` there)
raised on that rank while the others waited in the first product forever (a hang). Now the wrapper
carries its operator's lockstep, and every rank raises the refusing rank's error.

Each MPI test launches this file under ``mpiexec -n N python -m mpi4py`` with one case."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 4])
def test_an_estimator_over_with_progress_refused_on_one_rank_raises_on_every_rank(n):
    pytest.importorskip("mpi4py")
    run_case(__file__, "progress_refused", n, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _outcome(comm, fn) -> list:
    try:
        fn()
        got = "ok"
    except (TypeError, ValueError) as e:
        got = type(e).__name__
    return comm.allgather_object(got)


def case_progress_refused(comm) -> None:
    from optkern import hessian
    from optkern.distributed import distributed

    A = np.diag(np.arange(1.0, 21.0))
    H = distributed(A, comm, 1.0 / comm.size)
    last = comm.size - 1
    ticks: list = []
    Hp = hessian.with_progress(H, lambda done, total: ticks.append(done), 8)
    every = _outcome(comm, lambda: hessian.trace(Hp, num_matvecs=-1 if comm.rank == last else 8, seed=0))
    assert every == ["ValueError"] * comm.size, every
    every = _outcome(comm, lambda: hessian.lanczos(Hp, steps=0 if comm.rank == last else 5))
    assert every == ["ValueError"] * comm.size, every
    # the ranks still in step: the wrapped operator's estimates are the plain one's, progress reported
    ticks.clear()
    got = hessian.trace(Hp, num_matvecs=8, seed=3).estimate
    assert got == hessian.trace(H, num_matvecs=8, seed=3).estimate
    assert ticks and ticks[-1] == 8, ticks  # (a block of k vectors counts k)
    top = hessian.top_eigenvalues(Hp, k=2).eigenvalues
    np.testing.assert_allclose(top, [20.0, 19.0], rtol=1e-10)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
