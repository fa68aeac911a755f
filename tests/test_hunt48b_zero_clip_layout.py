"""ZeRO-1 clipping's layout made once per layout, not at every ``synchronize`` (hunt 48b).

``synchronize`` built its ShardLayout anew at every step (a pass over every param), and the clip
then hashed it whole to find its cached plan and took its signature (another pass, a repr and a
crc32) to compare between ranks: ~2 ms of a 6 ms synchronize-and-clip at 1000 small params (this
machine, loaded). The layout is now kept on the optimizer with what it is made of, its hash and
signature made once; a new layout (a group added) is made anew, equal to one built from scratch.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O
from optkern.clip import clip_grad_norm_
from optkern.distributed import sharded_clip

MPI = pytest.importorskip("mpi4py.MPI")


def _zero(ps):
    from optkern.distributed import Communicator, ShardedOptimizer

    comm = Communicator(MPI.COMM_SELF)
    return ShardedOptimizer(O.SGD, ps, comm, lr=0.1), comm


def test_the_layout_is_made_once_and_anew_for_a_new_layout(monkeypatch):
    ps = [np.linspace(-1, 1, n).astype(np.float32) for n in (7, 5, 9)]
    z, comm = _zero(ps)
    built = []
    real = sharded_clip._layout_of
    monkeypatch.setattr(sharded_clip, "_layout_of", lambda z: built.append(1) or real(z))
    grads = [np.full(p.shape, 0.5, np.float32) for p in ps]
    lays = []
    for _ in range(3):
        shard = z.synchronize(grads)
        clip_grad_norm_(shard, 1.0, comm=comm)
        lays.append(shard.layout)
        with z.skip_synchronize():
            z.step()
    assert len(built) == 1 and lays[0] is lays[1] is lays[2]
    assert lays[0] == real(z) and hash(lays[0]) == hash(real(z))
    extra = np.ones(4, np.float32)
    z.add_param_group({"params": [extra]})
    shard = z.synchronize([*grads, np.ones(4, np.float32)])
    assert len(built) == 2 and shard.layout is not lays[0] and shard.layout == real(z)
    assert shard.layout.params[-1][1] == 4


def test_a_layout_hashes_and_signs_by_its_value():
    a = sharded_clip.ShardLayout(0, ((0, 5),), ((0, 3), (3, 2)), ((0, 5),))
    b = sharded_clip.ShardLayout(0, ((0, 5),), ((0, 3), (3, 2)), ((0, 5),))
    c = sharded_clip.ShardLayout(0, ((0, 5),), ((0, 2), (2, 3)), ((0, 5),))
    assert a == b and hash(a) == hash(b) and a.signature() == b.signature()
    assert a != c and a.signature() != c.signature()
