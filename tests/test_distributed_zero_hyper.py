"""ShardedOptimizer (ZeRO-1): hyper-parameters changed after construction on one rank only.

Construction compares the ranks' groups and hyper-parameters; a later change through
``param_groups`` (a group's lr set on one rank, a schedule stepped on one rank) went unchecked, and
that rank stepped its slices with other values: the replicas diverged silently. Each step now
compares a hash of them (one small allreduce) and raises the same ValueError on every rank.

Each test launches this file under ``mpiexec -n 2 python -m mpi4py`` with one case (the functions
below ``# ---- cases``), which prints ``rank R: CASE ok`` on every rank. A rank that raises aborts
the job (non-zero exit); one that raises while the other waits in a collective hangs it (the
launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 120  # s: a hang is a failure


def _run(case: str, tmp_path) -> None:
    run_case(__file__, case, 2, str(tmp_path), timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_a_group_lr_changed_on_one_rank_raises_on_every_rank(tmp_path):
    _run("one_rank_lr", tmp_path)


@pytest.mark.spawns
def test_other_hyper_parameters_and_the_skip_synchronize_path(tmp_path):
    _run("other_hyper", tmp_path)


@pytest.mark.spawns
def test_changes_made_alike_on_every_rank_step_as_before(tmp_path):
    """A schedule on every rank: no error, and the ranks' parameters stay bitwise equal."""
    _run("alike", tmp_path)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _params():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(5), rng.standard_normal((2, 3)), rng.standard_normal(4)]


def _grads(k: int) -> list:
    return [np.full(5, 0.5 + k), np.full((2, 3), -1.0 + k), np.full(4, 0.25 * k)]


def _same_on_every_rank(comm, arrays) -> None:
    got = comm.allgather_object([a.tobytes() for a in arrays])
    assert all(g == got[0] for g in got), "the ranks' parameters differ"


def case_one_rank_lr(comm, tmp) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    r = comm.rank
    p = _params()
    z = ShardedOptimizer(optim.Adam, [{"params": p[:2]}, {"params": p[2:], "lr": 0.1}], comm, lr=0.05)
    z.step(_grads(0))
    before = [a.copy() for a in p]
    if r == 1:
        z.param_groups[1]["lr"] = 0.5
    with _raises(ValueError, "hyper-parameter 'lr' is 0.5 on rank 1, 0.1 on rank 0"):
        z.step(_grads(1))
    # refused before any collective of the step: the parameters are as they were, on every rank
    for a, b in zip(p, before):
        assert a.tobytes() == b.tobytes()
    with _raises(ValueError, "changed after construction on some ranks only"):  # (still differing)
        z.step(_grads(1))
    if r == 1:  # put back: the steps go on
        z.param_groups[1]["lr"] = 0.1
    z.step(_grads(1))
    _same_on_every_rank(comm, p)
    # the same value written another way (np.float64, an int for a float) is the same value
    z.param_groups[0]["lr"] = np.float64(0.05) if r == 0 else 0.05
    z.param_groups[0]["weight_decay"] = 0 if r == 0 else 0.0
    z.step(_grads(2))
    _same_on_every_rank(comm, p)
    # a list changed in place on one rank (the snapshot kept that same list: it compared equal)
    z.param_groups[0]["betas"] = [0.9, 0.999]
    z.step(_grads(2))
    if r == 1:
        z.param_groups[0]["betas"][1] = 0.99
    with _raises(ValueError, "params[0]: hyper-parameter 'beta2' is 0.99 on rank 1, 0.999 on rank 0"):
        z.step(_grads(3))


def case_other_hyper(comm, tmp) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    r = comm.rank
    p = _params()
    z = ShardedOptimizer(optim.SGD, p, comm, lr=0.1, momentum=0.9)
    z.step(_grads(0))
    if r == 0:
        z.param_groups[0]["momentum"] = 0.5
    with _raises(ValueError, "params[0]: hyper-parameter 'momentum' is 0.9 on rank 1, 0.5 on rank 0"):
        z.step(_grads(1))
    z.param_groups[0]["momentum"] = 0.5  # now alike
    z.step(_grads(1))
    _same_on_every_rank(comm, p)
    # inside skip_synchronize (the gradients already reduced): the same check, on every rank
    if r == 1:
        z.param_groups[0]["nesterov"] = True
    z.synchronize(_grads(2))
    with _raises(ValueError, "'nesterov' is True on rank 1, False on rank 0"), z.skip_synchronize():
        z.step()
    z.param_groups[0]["nesterov"] = True
    with z.skip_synchronize():
        z.step()
    _same_on_every_rank(comm, p)
    # AdaGrad-Norm (a per-group collective of its own)
    q = _params()
    a = ShardedOptimizer(optim.AdagradNorm, [{"params": q[:1]}, {"params": q[1:]}], comm, lr=0.1)
    a.step(_grads(0))
    if r == 1:
        a.param_groups[0]["lr"] = 0.2
    with _raises(ValueError, "params[0]: hyper-parameter 'lr' is 0.2 on rank 1, 0.1 on rank 0"):
        a.step(_grads(1))


def case_alike(comm, tmp) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    p = _params()
    z = ShardedOptimizer(optim.AdamW, [{"params": p[:1]}, {"params": p[1:]}], comm, lr=0.1, weight_decay=0.01)
    for k in range(6):
        for g in z.param_groups:
            g["lr"] = 0.1 * 0.5**k  # a schedule, every rank
        z.step(_grads(k))
    _same_on_every_rank(comm, p)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
