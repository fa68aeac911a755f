"""``DistributedOptimizer.synchronize`` with the fusion buffers' views passed for other params.

``grad_buffers()`` gives one view of the fusion buffers per parameter; passed as the gradients in
their own places, they are reduced without copies. Passed elsewhere (swapped, or a view of one
bucket given for a param of another), the packing copied one gradient over the buffer slot of
another before that one was read, and the unpacking wrote results over slots still to be reduced:
the averages were silently wrong (2 ranks, op="sum", slots holding 1 and 2: both came back 4,
not 2 and 4). A gradient that shares memory with a fusion buffer other than as its own param's view
is now refused on every rank before anything is written, naming it and the param whose slot it is.

Each MPI test launches this file under ``mpiexec -n N python -m mpi4py`` with one case."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 4])
def test_fusion_buffer_views_in_other_places_are_refused(n):
    pytest.importorskip("mpi4py")
    run_case(__file__, "swapped", n, timeout=CASE_TIMEOUT)


def case_swapped(comm) -> None:
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    shapes = ((10,), (10,), (4, 5), (300000,))  # (three packed, the last one direct: its own bucket)
    params = [np.ones(s, np.float32) for s in shapes]
    d = DistributedOptimizer(optim.SGD(params, lr=1.0), comm, op="sum")
    bufs = d.grad_buffers()
    last = comm.size - 1
    for order, (bad, owner) in (((1, 0, 2, 3), (0, 1)), ((0, 1, 2, 3), (None, None))):
        for i, b in enumerate(bufs):
            b[...] = i + 1.0
        grads = [bufs[j] for j in order]
        before = [b.copy() for b in bufs]
        if bad is None:
            d.synchronize(grads)  # (each its own view: reduced in place)
            for i, b in enumerate(bufs):
                assert (b == (i + 1.0) * comm.size).all(), (i, b.reshape(-1)[:3])
            continue
        with raises(ValueError, f"grads[{bad}]: shares memory with the fusion buffer of params[{owner}]"):
            d.synchronize(grads)
        assert all(np.array_equal(a, b) for a, b in zip(bufs, before))
    # a slice of a buffer (another param's slot), on one rank only: refused on every rank
    g = [np.ones(s, np.float32) for s in shapes]
    if comm.rank == last:
        g[2] = bufs[0].reshape(-1)[:0].base[:20].reshape(4, 5)  # (the first two params' slots)
    with raises(ValueError, "grads[2]: shares memory with the fusion buffer of params[0]"):
        d.synchronize(g)
    # a view of the direct bucket's buffer given for a packed param
    g = [np.ones(s, np.float32) for s in shapes]
    g[0] = bufs[3][:10]
    with raises(ValueError, "grads[0]: shares memory with the fusion buffer of params[3]"):
        d.synchronize(g)
    # plain arrays and the views in their own places still pass, and step
    d.step([np.full(s, 2.0, np.float32) for s in shapes])
    assert all((p == 1.0 - 2.0 * comm.size).all() for p in params)


# ---- copies ---------------------------------------------------------------------------------------
# A copy of a DistributedOptimizer (copy.deepcopy, or pickled and loaded, alike on every rank) copied
# each fusion bucket's views one by one: arrays of their own, no longer in the copied buffer. The copy
# packed the gradients into those arrays, reduced its buffer (stale: last step's values) and copied the
# arrays back: no gradient was averaged, silently (op="sum" on 2 ranks: 1 stayed 1), and the copy's
# grad_buffers() were not reduced either. The views are now made again on the copied buffer.


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 4])
def test_a_copied_wrapper_reduces_into_its_own_buffers(n):
    pytest.importorskip("mpi4py")
    run_case(__file__, "copied", n, timeout=CASE_TIMEOUT)


def case_copied(comm) -> None:
    import copy
    import pickle

    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    shapes = ((10,), (3, 4), (300000,))  # (two packed, one direct)
    d = DistributedOptimizer(optim.SGD([np.ones(s, np.float32) for s in shapes], lr=1.0), comm, op="sum")
    d.grad_buffers()  # (the direct bucket's buffer made too)
    want = sum(range(1, comm.size + 1))
    for copied in (copy.deepcopy(d), pickle.loads(pickle.dumps(d))):
        grads = [np.full(s, comm.rank + 1.0, np.float32) for s in shapes]
        copied.synchronize(grads)
        assert all((g == want).all() for g in grads), [float(g.reshape(-1)[0]) for g in grads]
        bufs = copied.grad_buffers()
        for b in bufs:
            b[...] = comm.rank + 1.0
        copied.synchronize(bufs)
        assert all((b == want).all() for b in bufs), [float(b.reshape(-1)[0]) for b in bufs]
        copied.step([np.full(s, 1.0, np.float32) for s in shapes])
        params = copied.param_groups[0]["params"]
        assert all((p == 1.0 - comm.size).all() for p in params), [float(p.reshape(-1)[0]) for p in params]


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
