"""ShardedOptimizer and distributed curvature defects found by a hunt at 2 and 3 ranks.

- A ZeRO-1 step refused on one rank only (a hyper-parameter set out of range on that rank, a
  gradient of the wrong shape or a bad ``grad_weight`` there) raised on that rank while the others
  waited forever in the step's hyper-parameter allreduce or its reduce-scatter (a hang without
  ``python -m mpi4py``, an abort of the whole job with it). The step's checks now report into that
  allreduce, which every rank makes anyway: every rank raises, naming the rank, and the steps go
  on once the value is put back.
- ``distributed(op, comm, weight=1.0)`` summed the ranks' products into the array the operator
  returned when it was not the input vector: an operator handing back a buffer it keeps (an output
  buffer, a cached product) had it overwritten by the sum, so the next product started from it.
- ``distributed(..., weight=)`` with a non-number raised float()'s message, naming no argument,
  and took ``True`` as 1.

Each MPI test launches this file under ``mpiexec -n N python -m mpi4py`` with one case (the
functions below ``# ---- cases``), which prints ``rank R: CASE ok`` on every rank; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure (a passing case takes seconds)


def _run(case: str, n: int) -> None:
    run_case(__file__, case, n, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_a_step_refused_on_one_rank_raises_on_every_rank_then_goes_on():
    _run("one_rank_refuses", 3)


@pytest.mark.spawns
def test_a_step_refused_on_every_rank_raises_its_own_error_everywhere():
    _run("every_rank_refuses", 2)


@pytest.mark.spawns
def test_distributed_operator_leaves_the_array_its_operator_returns_alone():
    _run("kept_buffer", 2)


@pytest.mark.parametrize("weight", [None, "0.5", [1.0], True])
def test_distributed_weight_must_be_a_real_number(weight):
    pytest.importorskip("mpi4py")
    from optkern.distributed import Communicator, distributed

    with pytest.raises(TypeError, match="^weight: expected a real number"):
        distributed(np.eye(3), Communicator(), weight)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _grads(k: int) -> list:
    return [np.full(5, 0.5 + k), np.full((2, 3), -1.0 + k), np.full(4, 0.25 * k)]


def _same_on_every_rank(comm, arrays) -> None:
    got = comm.allgather_object([a.tobytes() for a in arrays])
    assert all(g == got[0] for g in got), "the ranks' parameters differ"


def case_one_rank_refuses(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    r, bad = comm.rank, 1
    rng = np.random.default_rng(0)
    p = [rng.standard_normal(5), rng.standard_normal((2, 3)), rng.standard_normal(4)]
    for cls in (optim.Adam, optim.AdagradNorm):
        z = ShardedOptimizer(cls, [{"params": p[:2]}, {"params": p[2:], "lr": 0.1}], comm, lr=0.05)
        z.step(_grads(0))
        before = [a.copy() for a in p]
        # an lr out of range on one rank: that rank raises its own error, the others name it
        if r == bad:
            z.param_groups[1]["lr"] = -1.0
        text = "param_groups[1]['lr']: must be in" if r == bad else "(on rank 1)"
        with _raises(ValueError, text):
            z.step(_grads(1))
        if r == bad:
            z.param_groups[1]["lr"] = 0.1
        # a gradient of another shape on one rank
        g = _grads(1)
        if r == bad:
            g[2] = np.ones(3)
        with _raises(ValueError, "grads[2]: expected shape (4,), got (3,)"):
            z.step(g)
        # a grad_weight that is no weight, on one rank
        if r == bad:
            z.grad_weight = -0.5
        with _raises(ValueError, "grad_weight: must be finite and >= 0"):
            z.step(_grads(1))
        z.grad_weight = None
        # inside skip_synchronize (the slice reduced before): the same agreement
        z.synchronize(_grads(1))
        if r == bad:
            z.param_groups[0]["lr"] = float("nan")
        with _raises(ValueError, "param_groups[0]['lr']"), z.skip_synchronize():
            z.step()
        if r == bad:
            z.param_groups[0]["lr"] = 0.05
        # nothing was written by the refused steps; the next ones go on alike on every rank
        for a, b in zip(p, before):
            assert a.tobytes() == b.tobytes()
        with z.skip_synchronize():
            z.step()
        z.step(_grads(2))
        _same_on_every_rank(comm, p)


def case_every_rank_refuses(comm) -> None:
    """Every rank with the same bad value: each raises its own error (no rank named)."""
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    p = [np.ones(5), np.ones(3)]
    z = ShardedOptimizer(optim.SGD, p, comm, lr=0.1)
    z.param_groups[0]["lr"] = -1.0
    try:
        z.step([np.ones(5), np.ones(3)])
    except ValueError as e:
        assert "on rank" not in str(e) and "param_groups[0]['lr']" in str(e), str(e)
    else:
        raise AssertionError("not refused")
    z.param_groups[0]["lr"] = 0.1
    z.step([np.ones(5), np.ones(3)])
    _same_on_every_rank(comm, p)


def case_kept_buffer(comm) -> None:
    from optkern import hessian
    from optkern.distributed import distributed

    kept = np.arange(4.0) * (comm.rank + 1)  # the operator returns this same array every time
    mine = kept.copy()
    op = hessian.from_hvp(lambda v: kept, 4, dtype=np.float64)
    want = sum(np.arange(4.0) * (r + 1) for r in range(comm.size))
    for weight in (1.0, 0.5):
        D = distributed(op, comm, weight)
        for _ in range(3):
            y = D.matvec(np.ones(4))
            np.testing.assert_array_equal(y, want * weight)
            assert y is not kept
            np.testing.assert_array_equal(kept, mine)  # the operator's array as it was


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
