"""Params whose torch tensors moved to new memory in one step are checked together, once (hunt 48b).

ShardedOptimizer (ZeRO-1), LBFGS and NewtonCG checked each moved tensor's new memory for sharing
against all the params, the other moved ones at their *old* memory: two params that swapped their
memory (``a.data, b.data = b.data, a.data``) were refused at every step ("shares memory"), though
they share nothing; and ZeRO ran its whole distinctness check once per moved tensor (1000 params
given new memory: a 10 s step, quadratic). The new views are now checked together, once a step,
before any is put in.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O
from optkern import hessian
from optkern.distributed import sharded_setup

torch = pytest.importorskip("torch")


def _swap(a, b):
    a.data, b.data = b.data, a.data


def _zero(ps):
    from mpi4py import MPI

    from optkern.distributed import Communicator, ShardedOptimizer

    return ShardedOptimizer(O.Adam, ps, Communicator(MPI.COMM_SELF), lr=0.1)


def test_zero1_steps_params_that_swapped_memory_as_the_single_process_optimizer():
    def run(make):
        ps = [torch.linspace(-1, 1, 6), torch.linspace(2, 3, 6), torch.zeros(3)]
        step = make(ps)
        for s in range(3):
            if s == 1:
                _swap(ps[0], ps[1])
            step([np.full(p.shape, 0.25 * (s + 1) + k, np.float32) for k, p in enumerate(ps)])
        return [p.clone() for p in ps]

    def single(ps):
        opt = O.Adam(ps, lr=0.1)
        return opt.step

    got, want = run(lambda ps: _zero(ps).step), run(single)
    for a, b in zip(got, want):
        assert torch.equal(a, b), (a, b)


@pytest.mark.parametrize("kind", ["lbfgs", "newton"])
def test_lbfgs_and_newton_cg_step_params_that_swapped_memory(kind):
    def run(swap):
        ps = [torch.linspace(-1, 1, 4, dtype=torch.float64), torch.linspace(2, 3, 4, dtype=torch.float64)]
        if kind == "lbfgs":
            opt = O.LBFGS(ps, max_iter=2)
        else:
            opt = O.NewtonCG(ps, hessian.from_hvp(lambda v: 2.0 * v, 8, np.float64))

        def closure():
            return float(sum(((p - 0.5) ** 2).sum() for p in ps)), [2.0 * (p.numpy() - 0.5) for p in ps]

        opt.step(closure)
        if swap:
            _swap(*ps)
        else:  # (what the step must do after the swap: the same values moved into memory of their own)
            ps[0].data, ps[1].data = ps[1].data.clone(), ps[0].data.clone()
        opt.step(closure)
        return [p.clone() for p in ps]

    for a, b in zip(run(True), run(False)):
        assert torch.equal(a, b), (a, b)


def test_zero1_checks_the_moved_params_for_sharing_once_a_step(monkeypatch):
    ps = [torch.linspace(-1, 1, 5) for _ in range(6)]
    z = _zero(ps)
    grads = [np.full(5, 0.25, np.float32) for _ in ps]
    z.step(grads)
    calls = []
    real = sharded_setup.check_distinct
    monkeypatch.setattr(sharded_setup, "check_distinct", lambda params: calls.append(1) or real(params))
    for p in ps:
        p.data = p.data.clone()
    z.step(grads)
    assert len(calls) == 1
    # two moved onto one memory: refused, naming the later, nothing written
    big = torch.zeros(8)
    ps[2].data, ps[4].data = big[:5], big[3:]
    before = [p.clone() for p in ps]
    with pytest.raises(ValueError, match=r"params\[\d\] shares memory with params\[\d\]"):
        z.step(grads)
    assert all(torch.equal(a, b) for a, b in zip(ps, before)) and not big.any()
