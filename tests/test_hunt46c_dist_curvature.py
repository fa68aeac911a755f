"""``hessian.from_mlp(..., batches=, comm=)`` on a rank whose share of the batches is none.

The docstring says each rank passes its own rows, "possibly none": ``x, y`` with zero rows were
taken (weight 0: the rank takes part in every reduction without applying its operator), but
``batches=[]`` -- what a split of the batches over the ranks gives a rank when there are fewer
batches than ranks (``batches[rank::world]``) -- raised "batches: needs at least one (x, y)
batch" on every rank. Now a rank may pass no batch with ``comm`` (a process alone still needs one),
and the operator and its estimators are the one process's on all the batches.

Each MPI test launches this file under ``mpiexec -n N python -m mpi4py`` with one case."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 4])
def test_a_rank_without_batches_takes_part_with_weight_zero(n):
    pytest.importorskip("mpi4py")
    run_case(__file__, "no_batches", n, timeout=CASE_TIMEOUT)


def test_a_process_alone_still_needs_a_batch():
    from optkern import hessian, nn

    model = nn.MLP([3, 4, 2], activation="tanh", dtype=np.float64)
    with pytest.raises(ValueError, match="batches: needs at least one"):
        hessian.from_mlp(model, model.init_params(seed=0), batches=[])


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def case_no_batches(comm) -> None:
    from optkern import hessian, nn

    model = nn.MLP([4, 6, 3], activation="tanh", dtype=np.float64)
    params = model.init_params(seed=3)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((9, 4)), rng.integers(0, 3, 9)
    every = [(x[:5], y[:5]), (x[5:], y[5:])]  # (two batches: rank 2 and 3 of 4 get none)
    mine = every[comm.rank :: comm.size] if comm.rank < 2 else []
    v = rng.standard_normal(model.num_params)
    for kind in ("hessian", "ggn"):
        for reduction in ("mean", "sum"):
            for fixed in (False, True):
                one = hessian.from_mlp(model, params, batches=every, kind=kind, reduction=reduction)
                dist = hessian.from_mlp(
                    model, params, batches=mine, kind=kind, reduction=reduction, fixed=fixed, comm=comm
                )
                np.testing.assert_allclose(dist @ v, one @ v, rtol=1e-12, atol=1e-14)
                t1 = hessian.trace(one, "hutchinson", 6, seed=1).estimate
                t2 = hessian.trace(dist, "hutchinson", 6, seed=1).estimate
                assert abs(t1 - t2) <= 1e-12 * abs(t1), (kind, reduction, t1, t2)
    # every rank without batches: no rows at all, refused on every rank (as with x, y of zero rows)
    with raises(ValueError, "every rank has zero rows"):
        hessian.from_mlp(model, params, batches=[], comm=comm)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
