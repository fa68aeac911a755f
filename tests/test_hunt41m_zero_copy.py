"""ShardedOptimizer's per-step copies (``sharded_copy``): the whole C-contiguous float32/float64
params go through one native multi-array copy each way, the rest (params a rank boundary cuts,
strided or Fortran-ordered arrays, empty ones) through the per-array path. Mixed params step as
the unsharded optimizer's, bit for bit, at 1-3 ranks (boundaries cutting different params), with
the weights changed in place between steps (each step reads them); a
param made read-only after construction is refused before the step writes anything."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.spawns
@pytest.mark.parametrize("n", [1, 2, 3])
def test_zero1_mixed_layout_params_step_as_the_unsharded_optimizer(n):
    run_case(__file__, "mixed", n, timeout=CASE_TIMEOUT)


def _params(dt):
    """Contiguous 1-D and 2-D arrays, a Fortran-ordered one, a strided view (of ``base``), an
    empty one: (the params, the strided view's base)."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((9, 8)).astype(dt)
    ps = [rng.standard_normal(s).astype(dt) for s in (13, (5, 7), 1)]
    ps += [np.asfortranarray(rng.standard_normal((6, 5)).astype(dt)), base[1::2, ::3], np.zeros(0, dt)]
    ps += [rng.standard_normal(s).astype(dt) for s in (40, 3)]
    return ps, base


def _grad(p, step):
    # (multiples of 1/64: a sum over <= 3 equal ranks and its division by the count are exact)
    return (((np.arange(p.size) * 7 + step * 3) % 17 - 8) / 64).astype(p.dtype).reshape(p.shape)


def case_mixed(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    for dt in (np.float32, np.float64):
        ps, base = _params(dt)
        ref, _ = _params(dt)
        gaps = base.copy()
        z = ShardedOptimizer(optim.Adam, ps, comm, lr=0.01)
        ref = [np.ascontiguousarray(r) for r in ref]  # (the unsharded optimizer takes contiguous arrays)
        opt = optim.Adam(ref, lr=0.01)
        for step in range(3):
            for p, r in zip(ps, ref):  # (weights changed in place between steps: each step reads them)
                p *= 0.5
                r *= 0.5
            # (a Fortran-ordered grad on odd steps: the per-array path; else the native pass)
            z.step([np.asfortranarray(_grad(p, step)) if step % 2 else _grad(p, step) for p in ps])
            opt.step([_grad(p, step) for p in ps])
            for i, (p, r) in enumerate(zip(ps, ref)):
                assert np.array_equal(p, r), (dt, step, i)
        untouched = np.ones(base.shape, bool)
        untouched[1::2, ::3] = False
        assert np.array_equal(base[untouched], gaps[untouched])  # (only the view's elements written)


def test_a_param_made_read_only_after_construction_is_refused_before_anything_is_written():
    from mpi4py import MPI

    from optkern import optim
    from optkern.distributed import Communicator, ShardedOptimizer

    ps = [np.full(10, float(i), np.float32) for i in range(6)]
    z = ShardedOptimizer(optim.SGD, ps, Communicator(MPI.COMM_SELF), lr=1.0)
    z.step([np.ones(10, np.float32)] * 6)
    ps[3].flags.writeable = False
    with pytest.raises(ValueError, match=r"^params\[3\]: .*read-only"):
        z.step([np.ones(10, np.float32)] * 6)
    # (checked before the step, its outcome agreed by the ranks: the per-array copies wrote the
    # params before it, after every rank's state had stepped; tests/test_hunt42c_zero_layout.py)
    for i, p in enumerate(ps):
        assert np.array_equal(p, np.full(10, i - 1.0, np.float32)), i


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
