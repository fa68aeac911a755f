"""The Communicator's reductions give IEEE's inf / NaN whatever NumPy's floating-point error state.

The ordered reductions add the ranks' rows in NumPy (``rank_order_reduce``), the float16 ones
that MPI cannot reduce run in float32 and are cast back, and a mean divides the sum: each an
ordinary NumPy operation, so an overflow (float16 gradients near 40000 on two ranks summed: AMP's
loss scaling overflows on purpose and skips the step) or ``inf + -inf`` warned a RuntimeWarning
on every such call and, under the caller's ``np.errstate(all="raise")`` (or warnings as errors),
raised FloatingPointError half way through the fold: ``x`` was left holding rank 0's row, not the
sum. MPI's own reduction (unordered float32 / float64) gives inf / NaN silently. Now every path
gives the IEEE result silently, as the MPI path does.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure (a passing case takes seconds)


def _row(dt, rank: int):
    big = float(np.finfo(dt).max) * 0.75
    # [overflow, inf + -inf, underflow of a mean (the smallest subnormal + 0, halved), a plain value]
    tiny = np.finfo(dt).smallest_subnormal if rank == 0 else 0.0
    return np.array([big, np.inf if rank == 0 else -np.inf, tiny, 1.0], dtype=dt)


def case_flags(comm) -> None:
    from optkern.distributed import Communicator

    for ordered in (True, False):
        c = Communicator(comm, backend="mpi", ordered=ordered)
        for dt in (np.float16, np.float32, np.float64):
            for op in ("sum", "mean"):
                with warnings.catch_warnings(), np.errstate(all="raise"):
                    warnings.simplefilter("error")
                    x = _row(dt, comm.rank)
                    c.allreduce(x, op)
                    y = np.concatenate([_row(dt, comm.rank)] * comm.size)
                    z = c.reduce_scatter(y, op)
                # (a float16 mean is taken in float32: no overflow; the others' sums overflow first)
                want_big = float(np.finfo(dt).max) * 0.75 if op == "mean" and dt == np.float16 else np.inf
                plain = comm.size if op == "sum" else 1.0
                for got in (x, z):
                    assert got[0] == want_big and np.isnan(got[1]) and got[3] == plain, (ordered, dt, op, got)


@pytest.mark.spawns
def test_reductions_give_ieee_results_under_errstate_raise_at_two_ranks():
    run_case(__file__, "flags", 2, timeout=CASE_TIMEOUT)


def case_weighted(comm) -> None:
    # grad_weight multiplies each rank's grads before the collective: an overflow on one rank only
    # raised there (errstate raise) while the other rank waited in the allreduce: a hang
    from optkern import optim
    from optkern.distributed import DistributedOptimizer, ShardedOptimizer

    for dt in (np.float64, np.float16):
        kw = {"master_weights": True} if dt == np.float16 else {}
        big = float(np.finfo(dt).max) * 0.75
        for wrap in ("dp", "dp-direct", "zero"):
            ps = [np.zeros(3, dt), np.zeros(2, dt)]
            if wrap == "zero":
                opt = ShardedOptimizer(optim.SGD, ps, comm, lr=0.0, grad_weight=2.0, **kw)
            else:
                inner = optim.SGD(ps, lr=0.0, **kw)
                opt = DistributedOptimizer(inner, comm, grad_weight=2.0, direct_kb=1e-9 if wrap == "dp-direct" else 256)
            g = [np.full(3, big if comm.rank == 1 else 1.0, dt), np.full(2, 1.0, dt)]
            with warnings.catch_warnings(), np.errstate(all="raise"):
                warnings.simplefilter("error")
                out = opt.synchronize(g)
            # the IEEE weighted sums: 2 big + 2 past the range (inf), 2 + 2 = 4
            if wrap == "zero":
                vals = np.concatenate([a.astype(np.float64).ravel() for a in out])
                assert np.isin(vals, [np.inf, 4.0]).all(), (dt, wrap, vals)
            else:
                assert np.isinf(g[0]).all() and (g[1] == 4.0).all(), (dt, wrap, g)


@pytest.mark.spawns
def test_a_weighted_overflow_on_one_rank_neither_raises_nor_hangs():
    run_case(__file__, "weighted", 2, timeout=CASE_TIMEOUT)


def test_rank_order_reduce_is_silent_under_errstate_raise():
    from optkern.distributed._arrays import rank_order_reduce

    rows = np.array([[6e4, np.inf, 1.0], [6e4, -np.inf, 1.0]], dtype=np.float16)
    out = np.zeros(3, np.float16)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        rank_order_reduce(rows, "sum", out)
        assert out[0] == np.inf and np.isnan(out[1]) and out[2] == 2.0
        rank_order_reduce(np.array([[1e308], [1e308]]), "mean", m := np.zeros(1))
        assert m[0] == np.inf  # (the sum's overflow, then halved: not an error)
        rank_order_reduce(np.array([[5e-324], [0.0]]), "mean", m)
        assert m[0] == 0.0  # (the halved subnormal underflows: not an error)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
