"""``broadcast_params`` on params of any layout.

ShardedOptimizer takes strided and Fortran-ordered params, and its docs ask for the ranks' values
to be made equal with ``broadcast_params`` first; that refused every such param ("arrays[0]: array
must be C-contiguous": MPI moves contiguous bytes). Now they move as a contiguous copy written
back into them on the other ranks: each equals the root's, the elements of a strided param's
base outside it are left alone, and the ZeRO steps from there match the unsharded optimizer's
on the root's values, bit for bit, on every rank. A read-only array is still refused by name,
on every rank, before anything moves.
"""

from __future__ import annotations

import sys

import ml_dtypes
import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


def _params(rank: int, dt):
    base = np.full((4, 6), -1.0, dt)
    base[:, ::2] = rank + 1.0
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4).astype(dt) * (rank + 1))
    return [fortran, base[:, ::2], np.linspace(0, rank + 1, 5).astype(dt)], base


def case_any_layout(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer, broadcast_params

    root = comm.size - 1
    for dt in (np.float32, ml_dtypes.bfloat16):
        ps, base = _params(comm.rank, dt)
        want, _ = _params(root, dt)
        broadcast_params(ps, comm, root=root)
        assert all(np.array_equal(p, w) for p, w in zip(ps, want))
        assert (base[:, 1::2] == -1.0).all()  # (the base outside the strided param: not written)
        assert ps[0].flags.f_contiguous  # (written in place: still the caller's array)
        if dt != np.float32:
            continue
        ref = [np.ascontiguousarray(w) for w in want]
        z = ShardedOptimizer(optim.Adam, ps, comm, lr=0.1)
        opt = optim.Adam(ref, lr=0.1)
        grads = [np.linspace(-1, 1, p.size, dtype=dt).reshape(p.shape) for p in ps]
        z.step(grads)
        opt.step(grads)
        assert all(np.array_equal(p, r) for p, r in zip(ps, ref))


def case_read_only_on_rank_0(comm) -> None:
    from optkern.distributed import broadcast_params

    ps, _ = _params(comm.rank, np.float32)
    before = [p.copy() for p in ps]
    if comm.rank == 0:
        ps[1].flags.writeable = False
    with raises(ValueError, "arrays[1]"):
        broadcast_params(ps, comm, root=comm.size - 1)
    assert all(np.array_equal(p, b) for p, b in zip(ps, before))


@pytest.mark.spawns
@pytest.mark.parametrize("n", [1, 2])
def test_broadcast_params_of_any_layout_then_zero1_steps(n):
    run_case(__file__, "any_layout", n, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_broadcast_params_refuses_a_read_only_strided_param_on_every_rank():
    run_case(__file__, "read_only_on_rank_0", 2, timeout=CASE_TIMEOUT)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
