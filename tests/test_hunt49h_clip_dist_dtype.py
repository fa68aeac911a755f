"""``clip_grad_norm_(grads, comm=)`` with gradients of another dtype on one rank.

The ranks' arrays are the parts of one vector, clipped as one process clips it; one process refuses
a list of mixed dtypes (``grads[1]: expected float64, got float32``). Across ranks it was taken
without a word: each rank rounded the clip factor in its own dtype (float32 on one rank, float64 on
the others), so the replicas were scaled by different factors. Now every rank raises the same
TypeError naming the dtypes and the rank, nothing written. A rank holding no elements (an empty
array of any dtype, as the docs ask of a rank without gradients) still takes part.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 120  # s: a hang is a failure


def case_dtypes(comm) -> None:
    import ml_dtypes

    import optkern

    r = comm.rank
    for other in (np.float32, np.float16, ml_dtypes.bfloat16):
        for p in (2.0, 1.0, 3.0, "inf", 8.0):
            g = [np.arange(1.0, 6.0).astype(other if r == 1 else np.float64)]
            before = g[0].copy()
            out = np.full(1, 7.0)
            with raises(TypeError, "grads: float64 on rank 0"):
                optkern.clip_grad_norm_(g, 1.0, p, out=out, comm=comm)
            assert g[0].tobytes() == before.tobytes(), (other, p)
            assert out[0] == 7.0, (other, p)
    # a rank without elements passes an empty array of any dtype: the others' dtype is the vector's
    for p in (2.0, "inf", 8.0):
        g = [np.zeros(0)] if r == 1 else [np.arange(1.0, 6.0, dtype=np.float32)]
        want = np.sqrt(55.0 * (comm.size - 1)) if p == 2.0 else None
        got = optkern.clip_grad_norm_(g, 1.0, p, comm=comm)
        if want is not None:
            assert abs(got - want) < 1e-12 * want, (got, want)
        g = [] if r == 0 else [np.arange(1.0, 6.0, dtype=np.float32)]
        optkern.clip_grad_norm_(g, 1.0, p, comm=comm)


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 3])
def test_another_dtype_on_one_rank_is_refused_on_every_rank(n):
    pytest.importorskip("mpi4py")
    run_case(__file__, "dtypes", n, timeout=CASE_TIMEOUT)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
