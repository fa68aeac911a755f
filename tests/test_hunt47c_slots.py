"""``DistributedOptimizer.synchronize`` with torch views of the fusion buffers in other params' places.

``check_slots`` found a gradient that shares a fusion buffer's memory by its NumPy ``base`` only: a
torch tensor over ``grad_buffers()[j]`` (``torch.from_numpy``) passed for another param is viewed
through DLPack, its base the tensor, and passed the check; the packing then copied one gradient over
another's slot and both came back wrong, silently (2 ranks, op="sum", slots 1 and 2: both 4, not
4 and 2). CuPy arrays (a torch CUDA tensor's DLPack view has no base) went the same way. Arrays whose
memory another library owns are now tested by address, with the collectives' one overlap test.

The MPI test launches this file under ``mpiexec -n 2 python -m mpi4py`` with one case."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure


def _buckets():
    from optkern.distributed.buckets import make_buckets

    params = [np.ones(s, np.float32) for s in ((10,), (10,), (4, 5))]
    return params, make_buckets(params, 1 << 20)


def test_torch_views_of_other_slots_are_refused_in_process():
    torch = pytest.importorskip("torch")
    from optkern.distributed.buckets import check_slots

    params, buckets = _buckets()
    (b,) = buckets
    views = b.views
    grads = [np.from_dlpack(torch.from_numpy(views[j])) for j in (1, 0, 2)]
    with pytest.raises(ValueError, match=r"grads\[0\]: shares memory with the fusion buffer of params\[1\]"):
        check_slots(buckets, grads)
    # a slice of a torch view (its base a view that owns nothing), reaching the next slot
    flat = np.from_dlpack(torch.from_numpy(b.flat))
    grads = [views[0], views[1], flat[5:25].reshape(4, 5)]
    with pytest.raises(ValueError, match=r"grads\[2\]: shares memory with the fusion buffer of params\[0\]"):
        check_slots(buckets, grads)
    # torch views in their own places, and arrays of their own, pass
    check_slots(buckets, [np.from_dlpack(torch.from_numpy(v)) for v in views])
    check_slots(buckets, [np.ones_like(p) for p in params])
    check_slots(buckets, [np.from_dlpack(torch.ones(p.shape)) for p in params])


def test_the_overlap_test_is_exact_for_any_layout():
    from optkern.distributed._arrays import _overlap

    a = np.zeros(20)
    assert _overlap(a[::-1][:5], a[15:])  # (a negative stride: its first element last in memory)
    assert not _overlap(a[::-1][:5], a[:15])
    assert not _overlap(a[:10], a[10:])
    assert _overlap(a.reshape(4, 5)[:, 0], a[15:16])
    assert not _overlap(a[:0], a)


@pytest.mark.spawns
def test_torch_views_in_other_places_are_refused_on_every_rank():
    pytest.importorskip("mpi4py")
    pytest.importorskip("torch")
    run_case(__file__, "torch_swapped", 2, timeout=CASE_TIMEOUT)


def case_torch_swapped(comm) -> None:
    import torch

    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    shapes = ((10,), (10,), (4, 5))
    params = [np.ones(s, np.float32) for s in shapes]
    d = DistributedOptimizer(optim.SGD(params, lr=1.0), comm, op="sum")
    bufs = d.grad_buffers()
    for i, b in enumerate(bufs):
        b[...] = i + 1.0
    before = [b.copy() for b in bufs]
    grads = [torch.from_numpy(bufs[j]) for j in (1, 0, 2)]
    with raises(ValueError, "grads[0]: shares memory with the fusion buffer of params[1]"):
        d.synchronize(grads)
    assert all(np.array_equal(a, b) for a, b in zip(bufs, before))
    # torch views in their own places are reduced (in place, through the buffer)
    d.synchronize([torch.from_numpy(b) for b in bufs])
    for i, b in enumerate(bufs):
        assert (b == (i + 1.0) * comm.size).all(), (i, b.reshape(-1)[:3])


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
