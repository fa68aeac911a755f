"""``check_slots`` on CuPy gradients (the NumPy cases: tests/test_hunt47c_slots.py).

A CuPy gradient was found by its ``base`` being a fusion buffer only: a CuPy array imported through
DLPack (a torch CUDA tensor's view of ``grad_buffers()[j]``) has no base, and neither has the
emulator's view of one's (its ``base`` a new wrapper each time), so a buffer view passed for another
param was packed over that param's slot, silently. They are now found by address. Needs CuPy only
(no kernel of optkern._cuda runs): the GPU, or ``tools/cuda_emu/run`` (its CuPy on the CPU)."""

from __future__ import annotations

import numpy as np
import pytest

cp = pytest.importorskip("cupy")


def _buckets():
    from optkern.distributed.buckets import make_buckets

    params = [cp.zeros(s, dtype=np.float32) for s in ((10,), (10,), (4, 5))]
    return params, make_buckets(params, 1 << 20)


def test_cupy_views_of_other_slots_are_refused():
    from optkern.distributed.buckets import check_slots

    params, buckets = _buckets()
    views = buckets[0].views
    with pytest.raises(ValueError, match=r"grads\[0\]: shares memory with the fusion buffer of params\[1\]"):
        check_slots(buckets, [views[1], views[0], views[2]])
    imported = [cp.from_dlpack(v) for v in views]  # (DLPack: no base in CuPy)
    with pytest.raises(ValueError, match=r"grads\[0\]: shares memory with the fusion buffer of params\[1\]"):
        check_slots(buckets, [imported[1], imported[0], imported[2]])
    flat = buckets[0].flat
    with pytest.raises(ValueError, match=r"grads\[2\]: shares memory with the fusion buffer of params\[0\]"):
        check_slots(buckets, [views[0], views[1], flat[5:25].reshape(4, 5)])
    # in their own places, imported or not, and arrays of their own: taken
    check_slots(buckets, list(views))
    check_slots(buckets, imported)
    check_slots(buckets, [cp.ones_like(p) for p in params])
