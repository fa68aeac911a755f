"""AdaGrad-Norm's step size ``lr / b`` at its bounds, sharded (ZeRO-1) and not.

The sharded step summed ``||g'||^2`` over the ranks, added it to ``b^2``, and only then stepped
through ``sgd_``, whose bound on a user's lr (float32's max ** (1/4), 4.3e9) refused the derived
rate ``lr / b``: with a small ``b0`` and a zero first gradient (rate ``lr / b0``) every rank raised
"lr: 1e10 is above ..." with its ``b^2`` already changed, where the unsharded optimizer steps.
It now steps with the rule's rate through the same kernel, as the unsharded optimizer, bit for
bit. A ``b0`` so small that ``lr / b0`` overflows the step's dtype (float32: the rate rounded to
inf, and a zero gradient's step inf * 0 made every param NaN in the unsharded optimizer) is
refused with the other hyper-parameters, naming ``b0``, before anything is written or reduced.
Each slice's ``||g'||^2`` is the rule's own (``g' = ±g + wd p`` with one fma, summed by the native
kernel), not a NumPy copy of it rounded twice.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


def _grads(step):
    # (a zero first gradient, then multiples of 1/2: every ||g||^2 and b^2 exact in any order)
    return [np.full(7, 0.5 * step, np.float32), np.full(3, -0.5 * step, np.float32)]


def case_small_b0(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    ps = [np.ones(7, np.float32), np.linspace(-1, 1, 3, dtype=np.float32)]
    ref = [p.copy() for p in ps]
    z = ShardedOptimizer(optim.AdagradNorm, ps, comm, lr=1.0, b0=1e-10)
    opt = optim.AdagradNorm(ref, lr=1.0, b0=1e-10)
    for step in range(3):
        z.step(_grads(step))
        opt.step(_grads(step))
        assert all(np.array_equal(p, r) for p, r in zip(ps, ref)), step
    b_sq = z.optimizer.state_dict()["state"][0]["b_sq"] if z.optimizer.state else None
    if b_sq is not None:  # (a rank holding a slice)
        assert b_sq == opt.state_dict()["state"][0]["b_sq"]


def case_b0_overflowing_set_on_rank_0(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    ps = [np.ones(7, np.float32), np.ones(3, np.float32)]
    z = ShardedOptimizer(optim.AdagradNorm, ps, comm, lr=1.0)
    z.step(_grads(1))
    if comm.rank == 0:
        z.param_groups[0]["b0"] = 1e-40
    before = [p.copy() for p in ps]
    state = z.optimizer.state_dict()["state"]
    with raises(ValueError, "overflow float32" if comm.rank == 0 else "b0"):  # (elsewhere: "differ")
        z.step(_grads(1))
    assert all(np.array_equal(p, b) for p, b in zip(ps, before))
    assert z.optimizer.state_dict()["state"] == state


def case_weight_decay(comm) -> None:
    # (each slice's g' = g + wd p was formed in NumPy, rounded twice where the rule's fma rounds
    # once: b^2 drifted ~4e-9 relative from the unsharded optimizer's in two steps; now only the
    # order of the float64 sum differs)
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    def groups(ps):
        return [{"params": ps[:1], "lr": 0.2}, {"params": ps[1:], "weight_decay": 0.1, "maximize": True}]

    def make():
        return [
            np.linspace(-1, 1, 3, dtype=np.float32),
            np.linspace(0, 1, 40, dtype=np.float32),
            np.ones(2, np.float32),
        ]

    ps, ref = make(), make()
    z = ShardedOptimizer(optim.AdagradNorm, groups(ps), comm, lr=0.1)
    opt = optim.AdagradNorm(groups(ref), lr=0.1)
    for step in range(3):
        z.step([np.full(p.shape, 0.25 * (step + 1), np.float32) for p in ps])
        opt.step([np.full(p.shape, 0.25 * (step + 1), np.float32) for p in ref])
    got = z.consolidate_state_dict(to=None)["state"]
    want = opt.state_dict()["state"]
    for k in want:
        assert abs(got[k]["b_sq"] - want[k]["b_sq"]) <= 1e-15 * want[k]["b_sq"], (k, got[k], want[k])
    assert all(np.array_equal(p, r) for p, r in zip(ps, ref))


@pytest.mark.spawns
def test_zero1_adagrad_norm_with_weight_decay_sums_the_rules_g_prime():
    run_case(__file__, "weight_decay", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
@pytest.mark.parametrize("n", [1, 2])
def test_zero1_adagrad_norm_with_a_small_b0_steps_as_the_unsharded_optimizer(n):
    run_case(__file__, "small_b0", n, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_zero1_adagrad_norm_b0_overflowing_on_one_rank_raises_on_every_rank_first():
    run_case(__file__, "b0_overflowing_set_on_rank_0", 2, timeout=CASE_TIMEOUT)


@pytest.mark.parametrize("dt", [np.float32, np.float16])
def test_adagrad_norm_b0_whose_rate_overflows_is_refused_naming_it(dt):
    from optkern import optim

    kw = {"master_weights": True} if dt == np.float16 else {}
    with pytest.raises(ValueError, match=r"\['b0'\]: 1e-40 makes the step size lr / b0 = 1e\+40 overflow float32"):
        optim.AdagradNorm([np.ones(3, dt)], lr=1.0, b0=1e-40, **kw)
    # the largest rate that stays finite steps a zero gradient to no change (inf * 0 was NaN)
    p = np.ones(3, dt)
    opt = optim.AdagradNorm([p], lr=1.0, b0=1e-38, **kw)
    opt.step([np.zeros(3, dt)])
    assert np.array_equal(p, np.ones(3, dt))
    # float64 steps keep the rate in float64: its bound is the squared b0's
    q = np.ones(3)
    optim.AdagradNorm([q], lr=1.0, b0=1e-40).step([np.zeros(3)])
    assert np.array_equal(q, np.ones(3))


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
