"""DistributedOptimizer and a param reshaped in place (``p.shape = ...``) after construction.

The wrapped optimizer steps such a param as before (the same elements in the same C order; its
gradients come in the new shape), but the fusion buckets' views kept the old shape: packing the
gradients raised NumPy's "could not broadcast" after the ranks had agreed on the step, and with
one rank alone reshaped that rank raised while the others waited in the bucket's allreduce
forever. The buckets now copy each gradient in its own shape: every rank steps, bit for bit as
the unsharded optimizer, whichever ranks reshaped (the collectives depend on sizes only); so
does a closure optimizer (L-BFGS), whose closure's grads went into those views too.
"""

from __future__ import annotations

import sys

import ml_dtypes
import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


def _grads(ps, step):
    # (multiples of 1/64, alike on every rank: their mean is exact)
    return [(((np.arange(p.size) * 7 + step) % 17 - 8) / 64).astype(p.dtype).reshape(p.shape) for p in ps]


def case_reshaped(comm, who) -> None:
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    for dt, kw, extra in (
        (np.float32, {}, {}),
        (np.float32, {}, {"direct_kb": 1e-6}),  # (every param its own direct bucket)
        (ml_dtypes.bfloat16, {"master_weights": True}, {"grad_weight": 1.0 / comm.size}),
    ):
        ps = [np.linspace(-1, 1, 6).astype(dt).reshape(2, 3), np.linspace(0, 1, 4).astype(dt)]
        ref = [p.copy() for p in ps]
        d = DistributedOptimizer(optim.Adam(ps, lr=0.1, **kw), comm, **extra)
        opt = optim.Adam(ref, lr=0.1, **kw)
        for step in range(3):
            if step == 1:
                if who == "all" or comm.rank == 0:
                    ps[0].shape = (3, 2)
                ref[0].shape = ps[0].shape
            d.step(_grads(ps, step))
            opt.step(_grads(ref, step))
            assert all(np.array_equal(p, r) for p, r in zip(ps, ref)), (dt, extra, step)


def case_closure_reshaped(comm) -> None:
    # (the closure's grads were copied into the buckets' views of the old shape: every rank raised
    # NumPy's broadcast error, where the unsharded L-BFGS steps the reshaped param)
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    a = np.linspace(-1, 1, 48).reshape(8, 6) ** 2 + np.eye(8, 6)
    b = np.linspace(0, 1, 8)

    def closure_for(x):
        def closure():
            r = a @ x.reshape(-1) - b
            return 0.5 * float(r @ r), [(a.T @ r).reshape(x.shape)]

        return closure

    x, xr = np.zeros((2, 3)), np.zeros((2, 3))
    d = DistributedOptimizer(optim.LBFGS([x], lr=1.0, line_search_fn="strong_wolfe"), comm)
    opt = optim.LBFGS([xr], lr=1.0, line_search_fn="strong_wolfe")
    for step in range(3):
        if step == 1:
            x.shape = xr.shape = (3, 2)
        d.step(closure_for(x))
        opt.step(closure_for(xr))
        assert np.array_equal(x, xr), step


@pytest.mark.spawns
def test_ddp_closure_optimizer_with_a_param_reshaped_in_place_steps_as_the_unsharded_one():
    run_case(__file__, "closure_reshaped", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
@pytest.mark.parametrize("who", ["all", "rank0"])
def test_ddp_param_reshaped_in_place_steps_as_the_unsharded_optimizer(who):
    run_case(__file__, "reshaped", 2, who, timeout=CASE_TIMEOUT)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
