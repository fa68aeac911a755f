"""optkern.distributed, the 41st hunt (2 ranks).

* The collectives took arrays whose elements MPI cannot move: byte-swapped (``>f4``: each rank's
  own checks and the ranks' agreement passed, then mpi4py raised ``BufferError: format string
  '>f' with non-native byte order``), object, string, datetime, structured and float8 arrays
  (``KeyError: "cannot map 'O' to MPI datatype"``, a DLPack BufferError): exceptions that name
  no argument, of types a caller catching TypeError / ValueError misses. ``broadcast_params``
  broadcast the arrays before such a one, then raised half way (the first arrays overwritten).
  Now each collective refuses them as it refuses a non-contiguous array (TypeError naming ``x``
  / ``out`` / ``arrays[i]``), on every rank, before anything moves.

* ZeRO-1 with ``state_dtype="int8"`` started every array at a multiple of the quantization block
  (256) in the flat buffer, so that each 8-bit block was one of the unsharded optimizer's: up to
  255 zeros per array in the flat parameter and gradient buffers and in the slices' 8-bit codes.
  1000 arrays of 10 elements made a flat buffer of 256000 elements for 10000, and each rank of 2
  held 260000 bytes of state where the unsharded 8-bit optimizer holds 28000 in all -- 6.5 times
  ZeRO-1's float32 states, which 8-bit states are meant to shrink 4 times. Now the arrays lie back
  to back; only one that a rank boundary cuts starts at a block multiple (at most world - 1 gaps),
  and the local optimizer steps each array's piece of the slice as its own array, quantized from
  its own element 0: the same blocks, bit for bit, at a cost of a few blocks per rank.

* ``ShardedOptimizer.step`` and ``broadcast_params`` wrote torch tensors (params passed as
  tensors, viewed zero-copy) without bumping their autograd version counters: a loss whose graph
  saved a param before the step back-propagated through the new values, silently (``(p * p).sum()``
  gave 2 * p_new; torch's in-place step, optkern.optim's and DistributedOptimizer's refuse that
  backward). And ``broadcast_params(model.parameters(), comm)`` read the generator in its layout
  check, then broadcast nothing (an empty list left), silently. Now both bump the counters of the
  tensors they wrote, and the arrays are read once.

* A hyper-parameter of -0.0 on one rank and 0.0 on another (``lr``, ``weight_decay``: both valid,
  equal by ``==``, but not alike: a -0.0 param steps to another sign bit) passed the construction's
  comparison of the groups, then every step of ShardedOptimizer and DistributedOptimizer raised
  ``AssertionError: hyper-parameter hashes differ between equal signatures`` (the per-step hash
  tells them apart, the comparison did not). Now the comparison is the hash's: ValueError naming the
  hyper-parameter and the ranks, at construction and at the step, on every rank.

The tests launch this file under ``mpiexec -n N python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.spawns
def test_collectives_refuse_arrays_mpi_cannot_move_naming_them():
    run_case(__file__, "dtypes", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 3])
def test_zero1_int8_states_of_many_small_arrays_take_the_unsharded_memory_and_steps(n):
    run_case(__file__, "zero8_small", n, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _unmovable(r: int) -> list:
    import ml_dtypes

    return [
        (np.arange(4) + r).astype(">f4"),
        (np.arange(4) + r).astype(">i8"),
        np.array([1.0 + r, 2, 3, 4], dtype=object),
        np.array(["a", "b", "c", "d"]),
        np.arange(4).astype("M8[s]"),
        np.zeros(4, dtype=[("a", "<f4"), ("b", "<i4")]),
        np.arange(4).astype(ml_dtypes.float8_e4m3fn),
    ]


def case_dtypes(comm) -> None:
    from optkern.distributed import Communicator, broadcast_params

    r = comm.rank
    for ordered in (False, True):
        c = Communicator(comm.mpi, ordered=ordered)
        for x in _unmovable(r):
            before = x.copy()
            for call in (
                lambda x=x, c=c: c.allreduce(x, "sum"),
                lambda x=x, c=c: c.reduce_scatter(x, "sum"),
                lambda x=x, c=c: c.allgather(x[:2]),
                lambda x=x, c=c: c.bcast(x, 0),
                lambda x=x, c=c: c.allreduce(x, "sum", check=False),
            ):
                with raises(TypeError, "x: "):
                    call()
                assert x.tobytes() == before.tobytes(), x.dtype
        # as an out= array beside a movable x
        good = np.arange(4, dtype=np.float32)
        with raises(TypeError, "out: "):
            c.reduce_scatter(good, "sum", out=np.zeros(2, ">f4"))
        with raises(TypeError, "out: "):
            c.allgather(good[:2], out=np.zeros(4, ">f4"))
        # the native arrays of every kind that moves still move
        for dt in (np.float32, np.int64, np.bool_, np.float16, np.longdouble):
            x = (np.arange(4) + r).astype(dt)
            c.allreduce(x, "max")
            assert np.array_equal(x, (np.arange(4) + comm.size - 1).astype(dt)), dt
    # broadcast_params: refused before any array is broadcast
    arrays = [np.full(3, 1.0 + r), (np.arange(3) + r).astype(">f8")]
    with raises(TypeError, "arrays[1]: "):
        broadcast_params(arrays, comm)
    assert np.array_equal(arrays[0], np.full(3, 1.0 + r))


@pytest.mark.spawns
def test_zero1_and_broadcast_params_bump_torch_versions_and_read_generators_once():
    pytest.importorskip("torch")
    run_case(__file__, "torch_versions", 2, timeout=CASE_TIMEOUT)


def case_torch_versions(comm) -> None:
    import torch

    from optkern import optim
    from optkern.distributed import ShardedOptimizer, broadcast_params

    r = comm.rank
    # a step: the graph saved before it refuses its backward, as after torch's own step
    p = torch.ones(4, requires_grad=True)
    q = torch.ones(3, requires_grad=True)
    loss = (p * p).sum() + (q * q).sum()
    z = ShardedOptimizer(optim.SGD, (t for t in (p, q)), comm, lr=0.5)  # (a generator, as parameters())
    z.step([torch.ones(4), torch.ones(3)])
    assert p.tolist() == [0.5] * 4 and q.tolist() == [0.5] * 3
    with raises(RuntimeError, "modified by an inplace operation"):
        loss.backward()
    # broadcast_params, from a generator: every array broadcast, each written one bumped
    a, b = torch.full((3,), 1.0 + r, requires_grad=True), torch.full((2,), 1.0 + r, requires_grad=True)
    loss = (a * b.sum()).sum()
    broadcast_params((t for t in (a, b)), comm)
    assert a.tolist() == [1.0] * 3 and b.tolist() == [1.0] * 2, (a, b)
    if r == 0:  # (root's own arrays are not written: its graph stands)
        loss.backward()
    else:
        with raises(RuntimeError, "modified by an inplace operation"):
            loss.backward()


@pytest.mark.spawns
def test_signed_zero_hyper_parameters_that_differ_between_ranks_are_named():
    run_case(__file__, "signed_zero", 2, timeout=CASE_TIMEOUT)


def case_signed_zero(comm) -> None:
    from optkern import optim
    from optkern.distributed import DistributedOptimizer, ShardedOptimizer

    r = comm.rank
    for key in ("lr", "weight_decay"):
        zero = -0.0 if r else 0.0
        with raises(ValueError, f"hyper-parameter {key!r} is -0.0 on rank 1, 0.0 on rank 0"):
            ShardedOptimizer(optim.AdamW, [np.ones(5, np.float32)], comm, **{"lr": 0.1, key: zero})
        with raises(ValueError, f"hyper-parameter {key!r} is -0.0 on rank 1, 0.0 on rank 0"):
            DistributedOptimizer(optim.AdamW([np.ones(5, np.float32)], **{"lr": 0.1, key: zero}), comm)
        # changed after construction, on rank 1 only: the step refuses, naming it, before it writes
        zp, dp = [-np.zeros(5, np.float32)], [-np.zeros(5, np.float32)]
        z = ShardedOptimizer(optim.AdamW, zp, comm, lr=0.1)
        d = DistributedOptimizer(optim.AdamW(dp, lr=0.1), comm)
        for opt, ps in ((z, zp), (d, dp)):
            opt.param_groups[0][key] = zero
            with raises(ValueError, f"hyper-parameter {key!r} is -0.0 on rank 1, 0.0 on rank 0"):
                opt.step([np.ones(5, np.float32)])
            assert ps[0].tobytes() == (-np.zeros(5, np.float32)).tobytes()


SMALL = [10] * 40 + [300, 7, 1, 0, 513] + [3] * 30  # (300 and 513 cut by a rank boundary)


def case_zero8_small(comm) -> None:
    from mpi4py import MPI

    from optkern import optim
    from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

    world, r = comm.size, comm.rank
    for cls, hyper, dt in (
        (optim.Adam, dict(lr=1e-2, state_dtype="int8"), np.float32),
        (optim.SGD, dict(lr=1e-2, momentum=0.9, state_dtype="int8", block_size=64), np.float32),
        (optim.AdamW, dict(lr=1e-2, state_dtype="int8", master_weights=True, stochastic_rounding=True), np.float16),
    ):
        rng = np.random.default_rng(0)
        init = [rng.standard_normal(k).astype(dt) for k in SMALL]
        zp, dp = [p.copy() for p in init], [p.copy() for p in init]

        def groups(ps):
            return [{"params": ps[:42]}, {"params": ps[42:], "lr": 3e-3}]

        z = ShardedOptimizer(cls, groups(zp), comm, **hyper)
        d = DistributedOptimizer(cls(groups(dp), **hyper), Communicator(comm.mpi, ordered=True))
        for s in range(3):
            g = [np.random.default_rng(10 * s + r).standard_normal(k).astype(dt) for k in SMALL]
            z.step([x.copy() for x in g])
            d.step(g)
            for i, (a, b) in enumerate(zip(zp, dp)):
                assert a.tobytes() == b.tobytes(), (cls.__name__, s, i)
        # memory: the flat buffer and the ranks' 8-bit states as the unsharded optimizer's, plus
        # whole blocks per rank, at most one gap per rank boundary and one partial block's scale
        # per state and rank boundary (it was 19968 elements for 1311 at block 256)
        block = hyper.get("block_size", 256)
        assert z._flat.size <= sum(SMALL) + 2 * world * block, z._flat.size
        want = d.optimizer.state_dict()["state"]
        names = [k[: -len("_scale")] for k in want[0] if k.endswith("_scale")]
        codes = sum(want[i][n].nbytes + want[i][f"{n}_scale"].nbytes for i in want for n in names)
        total = comm.mpi.allreduce(z.state_bytes())
        masters = sum(4 * k for k in SMALL) if dt == np.float16 else 0
        assert total <= codes + masters + (world - 1) * 4 * len(names), (total, codes, masters)
        # a consolidated checkpoint: the unsharded state, and it loads at another world size
        full = z.consolidate_state_dict(to=None)
        ones = [[p.copy() for p in zp] for _ in range(2)]
        z1 = ShardedOptimizer(cls, groups(ones[0]), Communicator(MPI.COMM_SELF), **hyper)
        u = cls(groups(ones[1]), **hyper)
        z1.load_state_dict(full)
        u.load_state_dict(d.optimizer.state_dict())
        for s in range(3, 5):
            g = [np.random.default_rng(10 * s).standard_normal(k).astype(dt) for k in SMALL]
            z1.step([x.copy() for x in g])
            u.step(g)
            for i, (a, b) in enumerate(zip(*ones)):
                assert a.tobytes() == b.tobytes(), (cls.__name__, "loaded on one rank", s, i)
        # and a rank's own shard loads back at this world size
        again = [p.copy() for p in zp]
        z2 = ShardedOptimizer(cls, groups(again), comm, **hyper)
        z2.load_state_dict(z.state_dict())
        g = [np.random.default_rng(7 + r).standard_normal(k).astype(dt) for k in SMALL]
        z2.step([x.copy() for x in g])
        z.step(g)
        for i, (a, b) in enumerate(zip(again, zp)):
            assert a.tobytes() == b.tobytes(), (cls.__name__, "own shard", i)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
