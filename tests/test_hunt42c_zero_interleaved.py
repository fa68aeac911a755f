"""ShardedOptimizer and params that are views interleaving in one buffer without sharing an
element: a matrix's column blocks (a fused weight split into params), ``a[::2]`` and ``a[1::2]``.

Their byte spans overlap, and ZeRO's construction check (spans only) refused them as "params[1]
shares memory with params[0]", where ZeRO takes strided params of any layout and writes each back
element by element. Now overlapping spans are tested exactly (the test ``optkern.swa`` makes,
one definition: ``_array_checks.first_sharing``); the steps are the unsharded optimizer's on
copies, bit for bit, at 1-3 ranks, and every element of the buffer is written by its own param's
update only. Views sharing an element are still refused, naming the later one.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


def _grad(p, step):
    return (((np.arange(p.size) * 5 + step) % 13 - 6) / 32).astype(p.dtype).reshape(p.shape)


def case_interleaved(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    for dt in (np.float32, np.float64):
        fused = np.linspace(-1, 1, 6 * 9).astype(dt).reshape(6, 9)
        line = np.linspace(0, 2, 21).astype(dt)
        ps = [fused[:, :4], fused[:, 4:7], fused[:, 7:], line[::2], line[1::2]]
        ref = [np.ascontiguousarray(p) for p in ps]
        z = ShardedOptimizer(optim.Adam, ps, comm, lr=0.01)
        opt = optim.Adam(ref, lr=0.01)
        for step in range(3):
            z.step([_grad(p, step) for p in ps])
            opt.step([_grad(r, step) for r in ref])
            for i, (p, r) in enumerate(zip(ps, ref)):
                assert np.array_equal(p, r), (dt, step, i)
        assert np.array_equal(fused, np.concatenate(ref[:3], axis=1))
        assert np.array_equal(line[::2], ref[3]) and np.array_equal(line[1::2], ref[4])


@pytest.mark.spawns
@pytest.mark.parametrize("n", [1, 2, 3])
def test_zero1_interleaved_disjoint_views_step_as_the_unsharded_optimizer(n):
    run_case(__file__, "interleaved", n, timeout=CASE_TIMEOUT)


def test_zero1_views_sharing_an_element_are_still_refused():
    from mpi4py import MPI

    from optkern import optim
    from optkern.distributed import Communicator, ShardedOptimizer

    comm = Communicator(MPI.COMM_SELF)
    m = np.zeros((4, 6), np.float32)
    ok = [m[:, :3], m[:, 3:]]
    ShardedOptimizer(optim.SGD, ok, comm, lr=1.0)  # (column blocks: accepted)
    with pytest.raises(ValueError, match=r"^params\[2\] shares memory with params\[0\]"):
        ShardedOptimizer(optim.SGD, [m[:, :3], m[:, 3:], m[1:2, 2:4]], comm, lr=1.0)
    line = np.zeros(12, np.float32)
    with pytest.raises(ValueError, match=r"^params\[1\] shares memory with params\[0\]"):
        ShardedOptimizer(optim.SGD, [line[::2], line[::3]], comm, lr=1.0)  # (line[6] in both)
    assert not m.any() and not line.any()


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
