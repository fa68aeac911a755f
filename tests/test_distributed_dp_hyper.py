"""DistributedOptimizer (data-parallel): hyper-parameters that differ between ranks, and a step
refused on one rank only.

Each rank steps its whole replica with the values in its own ``param_groups``. Nothing compared
them: a group's lr set on one rank only, a schedule stepped on one rank only, or groups that
differed from construction on, made that replica diverge silently. And a step refused on one rank
(a gradient of another shape there, an lr < 0 set there) raised on that rank while the others
waited forever in the buckets' allreduce. The groups are now compared at construction and at every
step (a hash in one small allreduce, as ShardedOptimizer does), and the step's own checks report
into that allreduce: every rank raises, naming the rank, before any gradient is averaged.

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

CASE_TIMEOUT = 120  # s: a hang is a failure (a passing case takes seconds)


def _run(case: str) -> None:
    run_case(__file__, case, 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_a_group_lr_or_a_schedule_changed_on_one_rank_raises_on_every_rank():
    """Then a schedule on every rank: no error, the replicas step as one process on the mean
    gradient; closure optimizers (synchronize only, as optkern.study uses them) wrap as before."""
    _run("one_rank_lr")


@pytest.mark.spawns
def test_other_hyper_parameters_and_the_skip_synchronize_path():
    _run("other_hyper")


@pytest.mark.spawns
def test_groups_that_differ_at_construction_raise_on_every_rank():
    _run("construction")


@pytest.mark.spawns
def test_a_step_refused_on_one_rank_raises_on_every_rank_then_goes_on():
    _run("one_rank_refuses")


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _params():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(5), rng.standard_normal((2, 3)), rng.standard_normal(4)]


def _grads(k: int, rank: int = 0) -> list:
    # (each rank its own gradients: a step that ran would change them, the average differing)
    return [np.full(5, 0.5 + k + rank), np.full((2, 3), -1.0 + k), np.full(4, 0.25 * k - rank)]


def _same_on_every_rank(comm, arrays) -> None:
    got = comm.allgather_object([a.tobytes() for a in arrays])
    assert all(g == got[0] for g in got), "the ranks' parameters differ"


def _unchanged(arrays, before) -> None:
    for a, b in zip(arrays, before):
        assert a.tobytes() == b.tobytes(), "a refused step wrote an array"


def _refused(d, grads, exc, text, p) -> None:
    """``d.step(grads)`` raises ``exc`` with ``text`` here, leaving the params and grads as they were."""
    before = [a.copy() for a in p], [g.copy() for g in grads]
    with _raises(exc, text):
        d.step(grads)
    _unchanged(p, before[0])
    _unchanged(grads, before[1])


def case_one_rank_lr(comm) -> None:
    from optkern import optim, schedules
    from optkern.distributed import DistributedOptimizer

    r = comm.rank
    p = _params()
    d = DistributedOptimizer(optim.Adam([{"params": p[:2]}, {"params": p[2:], "lr": 0.1}], lr=0.05), comm)
    d.step(_grads(0, r))
    if r == 1:
        d.param_groups[1]["lr"] = 0.5
    _refused(d, _grads(1, r), ValueError, "param_groups[1]: hyper-parameter 'lr' is 0.5 on rank 1, 0.1 on rank 0", p)
    _refused(d, _grads(1, r), ValueError, "changed after construction on some ranks only", p)  # (still)
    if r == 1:  # put back: the steps go on
        d.param_groups[1]["lr"] = 0.1
    d.step(_grads(1, r))
    _same_on_every_rank(comm, p)
    # the same value written another way (np.float64, an int for a float) is the same value
    d.param_groups[0]["lr"] = np.float64(0.05) if r == 0 else 0.05
    d.param_groups[0]["weight_decay"] = 0 if r == 0 else 0.0
    d.step(_grads(2, r))
    _same_on_every_rank(comm, p)
    # a schedule stepped on one rank only (attached to the wrapper, as to any optimizer)
    sched = schedules.exponential(0.05, gamma=0.5).attach(d)
    if r == 0:
        sched.step()
    _refused(d, _grads(3, r), ValueError, "hyper-parameter 'lr' is 0.05 on rank 1, 0.025 on rank 0", p)
    if r == 1:  # caught up: alike again
        sched.step()
    d.step(_grads(3, r))
    _same_on_every_rank(comm, p)
    _alike(comm)


def case_other_hyper(comm) -> None:
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    r = comm.rank
    p = _params()
    d = DistributedOptimizer(optim.AdamW(p, lr=0.01, weight_decay=0.01), comm, bucket_mb=1e-5)  # (3 buckets)
    d.step(_grads(0, r))
    if r == 0:
        d.param_groups[0]["betas"] = (0.8, 0.999)
    _refused(d, _grads(1, r), ValueError, "param_groups[0]: hyper-parameter 'beta1' is 0.9 on rank 1, 0.8 on rank 0", p)
    d.param_groups[0]["betas"] = [0.8, 0.999]  # now alike (a list for a tuple: the same value)
    d.step(_grads(1, r))
    if r == 1:  # the list changed in place, on one rank
        d.param_groups[0]["betas"][1] = 0.99
    _refused(d, _grads(1, r), ValueError, "'beta2' is 0.99 on rank 1, 0.999 on rank 0", p)
    d.param_groups[0]["betas"][1] = 0.99
    if r == 1:
        d.param_groups[0]["weight_decay"] = 0.1
    _refused(d, _grads(1, r), ValueError, "'weight_decay' is 0.1 on rank 1, 0.01 on rank 0", p)
    d.param_groups[0]["weight_decay"] = 0.1
    d.step(_grads(1, r))
    _same_on_every_rank(comm, p)
    # inside skip_synchronize (the gradients averaged before): the same check, on every rank
    q = _params()
    s = DistributedOptimizer(optim.SGD(q, lr=0.1, momentum=0.9), comm)
    g = _grads(2, r)
    s.synchronize(g)
    if r == 1:
        s.param_groups[0]["nesterov"] = True
    with _raises(ValueError, "'nesterov' is True on rank 1, False on rank 0"), s.skip_synchronize():
        s.step(g)
    s.param_groups[0]["nesterov"] = True
    with s.skip_synchronize():
        s.step(g)
    _same_on_every_rank(comm, q)


def case_construction(comm) -> None:
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    r = comm.rank
    p = _params()
    with _raises(ValueError, "param_groups[0]: hyper-parameter 'lr' is 0.2 on rank 1, 0.1 on rank 0"):
        DistributedOptimizer(optim.SGD(p, lr=0.1 * (r + 1)), comm)
    # the same arrays (check_same_params passes), grouped differently: stepped differently
    groups = [{"params": p}] if r == 0 else [{"params": p[:1]}, {"params": p[1:]}]
    with _raises(ValueError, "param_groups: 2 parameter groups on rank 1, 1 on rank 0"):
        DistributedOptimizer(optim.SGD(groups, lr=0.1), comm)
    with _raises(ValueError, "optimizer: Adam on rank 1, SGD on rank 0"):
        DistributedOptimizer((optim.SGD if r == 0 else optim.Adam)(p, lr=0.1), comm)
    # stochastic rounding with another seed on one rank rounds its half replica differently
    h = [a.astype(np.float16) for a in p]
    lowp = {"master_weights": True, "stochastic_rounding": True}
    with _raises(ValueError, "seed: 1 on rank 1, 0 on rank 0"):
        DistributedOptimizer(optim.AdamW(h, lr=0.1, seed=r, **lowp), comm)
    DistributedOptimizer(optim.AdamW(h, lr=0.1, seed=5, **lowp), comm).step([g.astype(np.float16) for g in _grads(0)])
    _same_on_every_rank(comm, h)
    # a group made invalid after the optimizer's construction, on one rank: every rank raises
    sgd = optim.SGD(p, lr=0.1)
    if r == 1:
        sgd.param_groups[0]["lr"] = -1.0
    with _raises(ValueError, "lr" if r == 1 else "(on rank 1)"):
        DistributedOptimizer(sgd, comm)
    # and the communicator is still in step: a good one trains
    d = DistributedOptimizer(optim.SGD(p, lr=0.1), comm)
    d.step(_grads(0, r))
    _same_on_every_rank(comm, p)


def case_one_rank_refuses(comm) -> None:
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    r, bad = comm.rank, 1
    p = _params()
    for kw in ({}, {"direct_kb": 0.01}):  # packed buckets, and every gradient reduced in place
        d = DistributedOptimizer(optim.Adam([{"params": p[:2]}, {"params": p[2:], "lr": 0.1}], lr=0.05), comm, **kw)
        d.step(_grads(0, r))
        # an lr out of range on one rank: that rank raises its own error, the others name it
        if r == bad:
            d.param_groups[1]["lr"] = -1.0
        text = "param_groups[1]['lr']: must be in" if r == bad else "(on rank 1)"
        _refused(d, _grads(1, r), ValueError, text, p)
        if r == bad:
            d.param_groups[1]["lr"] = 0.1
        # a gradient of another shape on one rank
        g = _grads(1, r)
        if r == bad:
            g[2] = np.ones(3)
        _refused(d, g, ValueError, "grads[2]: expected shape (4,), got (3,)", p)
        # a read-only gradient on one rank (the average is written into it)
        g = _grads(1, r)
        if r == bad:
            g[0].flags.writeable = False
        _refused(d, g, ValueError, "grads[0]: array is read-only", p)
        # a grad_weight beyond the gradients' dtype, on one rank (uneven shards: weights differ)
        g32 = [a.astype(np.float32) for a in _grads(1, r)]
        q = [a.astype(np.float32) for a in p]
        d32 = DistributedOptimizer(optim.SGD(q, lr=0.1), comm, grad_weight=1e300 if r == bad else 0.5, **kw)
        _refused(d32, g32, ValueError, "grad_weight: 1e+300 is not finite in the gradients' dtype float32", q)
        d32.grad_weight = 0.5
        d32.step(g32)
        _same_on_every_rank(comm, q)
        # inside skip_synchronize (the gradients averaged before): the same agreement
        g = _grads(1, r)
        d.synchronize(g)
        if r == bad:
            d.param_groups[0]["lr"] = float("nan")
        with _raises(ValueError, "param_groups[0]['lr']"), d.skip_synchronize():
            d.step(g)
        if r == bad:
            d.param_groups[0]["lr"] = 0.05
        with d.skip_synchronize():
            d.step(g)
        d.step(_grads(2, r))
        _same_on_every_rank(comm, p)


def _alike(comm) -> None:
    """Changes made alike on every rank step as before."""
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    r = comm.rank
    p, ref = _params(), _params()
    d = DistributedOptimizer(optim.AdamW([{"params": p[:1]}, {"params": p[1:]}], lr=0.1, weight_decay=0.01), comm)
    one = optim.AdamW([{"params": ref[:1]}, {"params": ref[1:]}], lr=0.1, weight_decay=0.01)
    for k in range(6):
        for opt in (d, one):
            for g in opt.param_groups:
                g["lr"] = 0.1 * 0.5**k  # a schedule, every rank
        d.step(_grads(k, r))
        one.step([(a + b) / 2 for a, b in zip(_grads(k, 0), _grads(k, 1))])  # (the mean of two ranks)
    _same_on_every_rank(comm, p)
    for a, b in zip(p, ref):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    # optimizers stepped from a closure, wrapped for their synchronize() (optkern.study)
    for opt in (optim.SAM(optim.SGD(_params(), lr=0.1)), optim.LBFGS(_params(), lr=0.5)):
        g = _grads(0, r)
        DistributedOptimizer(opt, comm).synchronize(g)
        np.testing.assert_array_equal(g[0], np.full(5, 1.0))  # (0.5 and 1.5: the mean)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
