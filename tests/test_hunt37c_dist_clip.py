"""``clip_grad_norm_(grads, max_norm, error_if_nonfinite=True, comm=comm)`` on a rank that holds no
gradients (``[]``, or only ``None``: "the norm of nothing", while other ranks hold some) returned
the global norm -- NaN or inf from another rank's gradients -- without raising, while every rank
holding gradients raised NonFiniteNormError: one rank went on to its next collective alone. Now
every rank raises NonFiniteNormError (``out`` left as it was).

Each MPI test launches this file under ``mpiexec -n N python -m mpi4py`` with one case."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 4])
def test_a_rank_without_gradients_raises_on_a_nonfinite_global_norm(n):
    pytest.importorskip("mpi4py")
    run_case(__file__, "no_grads_nonfinite", n, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def case_no_grads_nonfinite(comm) -> None:
    from optkern import clip_grad_norm_
    from optkern.clip import NonFiniteNormError

    for bad in (np.nan, np.inf):
        for empty in ([], [None]):
            for norm_type in (2.0, 1.0, 3.0, float("inf")):
                for with_out in (False, True):
                    grads = [np.array([bad, 1.0]), np.ones(3)] if comm.rank == 0 else list(empty)
                    out = np.full(1, -7.0) if with_out else None
                    try:
                        clip_grad_norm_(grads, 1.0, norm_type=norm_type, error_if_nonfinite=True, out=out, comm=comm)
                        got = "returned"
                    except NonFiniteNormError:
                        got = "NonFiniteNormError"
                    every = comm.allgather_object(got)
                    assert every == ["NonFiniteNormError"] * comm.size, (bad, empty, norm_type, with_out, every)
                    if out is not None:
                        assert out[0] == -7.0, "out written by a refused call"
                    if comm.rank == 0:
                        assert np.array_equal(grads[1], np.ones(3)), "grads written by a refused call"
    # finite: the rank without gradients returns the global norm, as the others do
    grads = [np.array([3.0, 4.0])] if comm.rank == 0 else []
    norms = comm.allgather_object(clip_grad_norm_(grads, 1.0, error_if_nonfinite=True, comm=comm))
    assert norms == [5.0] * comm.size, norms


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
