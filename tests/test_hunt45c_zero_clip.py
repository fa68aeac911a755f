"""ZeRO-1 + ``clip_grad_norm_(shard, comm=)``: the unsharded clip, bit for bit, at 2 and 4 ranks.

The one process sums its norm's terms in the native kernel's chunks of each param (65536 elements
from the param's first one, fixed lanes inside) and ends the partial sums in order. A rank's shard
is one array per group (a slice through several params) cut at the rank boundary, so its partial
sums were of other chunks: at p = 2 with gradients whose float64 sums of squares are rounded the
global norm was an ulp or more off the unsharded one (every p but inf), and so were the clipping
factor and the step. ``synchronize`` now returns a ``ShardGrads`` that knows its layout, and its
norm sums the params' own chunks (a chunk cut by a rank boundary put together from the ranks'
edges on the rank holding its first element): the norm, the clipped gradient and the params
after the step are the one process's to the bit for every split, p (1, 2, 1.5, 3, 7, inf),
float32 / float64, groups, a zero-size param, 8-bit states' aligned layout.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 120  # s: a hang is a failure (a passing case takes seconds)
P = (1.0, 2.0, 1.5, 3.0, 7.0, math.inf)
# params' shapes: small ones inside a rank, and ones past the kernel's chunk of 65536 whose chunks
# the rank boundaries cut (at 2 and 4 ranks), an empty one between them
LAYOUTS = (((7,), (5,)), ((70001,), (3,), (0,), (65537,)), ((9,), (3, 4), (1,)))


def _grads(shapes, dt, seed: int):
    # (alike on every rank, 11 significant bits: the ranks' mean is exact, the norm's sums are not)
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s) * 2.0 ** rng.integers(-8, 8)).astype(np.float16).astype(dt) for s in shapes]


def _params(shapes, dt):
    return [np.linspace(-1.0, 1.0, math.prod(s)).reshape(s).astype(dt) for s in shapes]


def _groups(ps, li: int):
    return [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.25}] if li == 2 else ps


def case_bits(comm) -> None:
    import optkern
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    for li, shapes in enumerate(LAYOUTS):
        for dt in (np.float32, np.float64):
            for p in P:
                ps, ref = _params(shapes, dt), _params(shapes, dt)
                z = ShardedOptimizer(optim.SGD, _groups(ps, li), comm, lr=0.5)
                opt = optim.SGD(_groups(ref, li), lr=0.5)
                for step in range(2):
                    grads = _grads(shapes, dt, 10 * li + step)
                    shard = z.synchronize(grads)
                    total = optkern.clip_grad_norm_(shard, 1e-3, norm_type=p, comm=comm)
                    with z.skip_synchronize():
                        z.step(grads)
                    want = optkern.clip_grad_norm_(grads, 1e-3, norm_type=p)
                    opt.step(grads)
                    assert total == want, (li, dt, p, step, total.hex(), want.hex())
                    assert all(np.array_equal(a, b) for a, b in zip(ps, ref)), (li, dt, p, step)


def case_int8_layout(comm) -> None:
    # (8-bit states: a param cut by a rank boundary starts at a block multiple, gaps of zeros
    # before it; one local array per param's piece)
    import optkern
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    shapes = ((300,), (70001,), (129,))
    for p in (2.0, 1.5, 7.0):
        ps = _params(shapes, np.float32)
        z = ShardedOptimizer(optim.AdamW, ps, comm, lr=1e-3, state_dtype="int8", block_size=256)
        grads = _grads(shapes, np.float32, 5)
        total = optkern.clip_grad_norm_(z.synchronize(grads), 1e-3, norm_type=p, comm=comm)
        want = optkern.clip_grad_norm_(grads, 1e-3, norm_type=p)
        assert total == want, (p, total.hex(), want.hex())


def case_mixed(comm) -> None:
    # a ShardGrads on some ranks, a plain list on others: the norms' collectives differ, so every
    # rank raises (before any), instead of waiting in another collective forever
    import optkern
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    shapes = LAYOUTS[0]
    z = ShardedOptimizer(optim.SGD, _params(shapes, np.float64), comm, lr=0.5)
    shard = z.synchronize(_grads(shapes, np.float64, 1))
    before = [g.copy() for g in shard]
    given = list(shard) if comm.rank == 1 else shard
    with raises(ValueError, "ShardedOptimizer layout"):
        optkern.clip_grad_norm_(given, 1e-3, comm=comm)
    assert all(np.array_equal(a, b) for a, b in zip(shard, before))


def case_changed(comm) -> None:
    # a ShardGrads changed since synchronize (an array dropped) is clipped as the plain list of its
    # arrays (the norm of the ranks' arrays), not refused nor misread as the layout's pieces
    import optkern
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    shapes = ((3,), (4,), (3,))  # (a group each: two pieces on each of 2 ranks)
    z = ShardedOptimizer(optim.SGD, [{"params": [p]} for p in _params(shapes, np.float64)], comm, lr=0.5)
    shard = z.synchronize(_grads(shapes, np.float64, 2))
    assert len(shard) == 2
    del shard[1:]
    got = optkern.clip_grad_norm_(shard, 1e300, comm=comm)
    want = optkern.clip_grad_norm_(list(shard), 1e300, comm=comm)
    assert got == want
    # another communicator than the optimizer's (this rank alone): the norm of its own arrays
    from mpi4py import MPI

    from optkern.distributed import Communicator

    shard = z.synchronize(_grads(shapes, np.float64, 3))
    for p in (2.0, 1.5):
        alone = optkern.clip_grad_norm_(shard, 1e300, norm_type=p, comm=Communicator(MPI.COMM_SELF, backend="mpi"))
        assert alone == optkern.clip_grad_norm_(list(shard), 1e300, norm_type=p), p


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 4])
def test_zero1_clip_is_the_unsharded_clip_bit_for_bit(n):
    run_case(__file__, "bits", n, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_zero1_int8_layout_clip_is_the_unsharded_clip():
    run_case(__file__, "int8_layout", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_shard_list_on_some_ranks_only_raises_on_every_rank():
    run_case(__file__, "mixed", 2, timeout=CASE_TIMEOUT)
    run_case(__file__, "changed", 2, timeout=CASE_TIMEOUT)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
