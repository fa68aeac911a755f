"""optkern.distributed, a second hunt at 1, 2 and 4 ranks.

* The data-parallel wrapper summed the ranks' float16 gradients to float16 before dividing by the
  world size: gradients near 40000 on 2 ranks (a mean of 40000, finite) became inf, while
  ``Communicator.allreduce(x, "mean")`` on the default path summed in float32 and stayed finite.
  The ordered path (``ordered=True``, every reduction of DistributedOptimizer and ZeRO-1 that is
  bitwise reproducible) folded the float16 rows in float16 and overflowed the same way, in the
  reduce-scatter too. Now a mean of 16-bit floats is summed and divided in float32 and rounded once
  on every path: the same bits on every rank, DistributedOptimizer and ZeRO-1 alike.

* ZeRO-1 with ``state_dtype="int8"`` aligns each array to the quantization block, so an array after
  an alignment gap starts at another flat offset than its unsharded element index. Stochastic
  rounding of float16 params (``master_weights`` and ``stochastic_rounding``) numbered its Philox
  words by the flat offset: that array drew other words than in the unsharded optimizer, and the
  sharded run was not bit-identical. Now every element draws its unsharded element's word.

* ``optkern.save(path, opt=z.consolidate_state_dict(to=0))`` (the README's one file that loads at
  any world size) then ``optkern.load(path, opt=z)`` refused: "holds a saved tree (dict)". Now a
  ShardedOptimizer target loads a saved consolidated dict (and a saved unsharded optimizer of its
  class) as its ``load_state_dict`` does; per-rank shards as before.

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
def test_float16_means_of_large_gradients_stay_finite_on_every_path():
    run_case(__file__, "half_mean", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
@pytest.mark.parametrize("n", [1, 2, 4])
def test_zero1_int8_with_stochastic_rounding_steps_as_the_unsharded_optimizer_bit_for_bit(n):
    run_case(__file__, "sr8", n, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_zero1_checkpoints_through_optkern_save_and_load(tmp_path):
    run_case(__file__, "save_load", 2, str(tmp_path), timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def case_half_mean(comm) -> None:
    import ml_dtypes

    from optkern import optim
    from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

    r = comm.rank
    for dt in (np.float16, ml_dtypes.bfloat16):
        # every rank near 40000: the sum (~80000) is past float16's 65504, the mean is not
        rows = [(40000 + 100 * np.arange(20) + 7 * k).astype(dt).astype(np.float32) for k in range(comm.size)]
        want = (sum(rows) / np.float32(comm.size)).astype(dt)  # the float32 mean, rounded once
        for ordered in (False, True):
            c = Communicator(comm.mpi, ordered=ordered)
            x = rows[r].astype(dt)
            c.allreduce(x, "mean")
            assert x.tobytes() == want.tobytes(), (dt, ordered, "allreduce", x)
            full = np.concatenate([rows[r].astype(dt)] * comm.size)
            out = c.reduce_scatter(full, "mean")
            assert out.tobytes() == want[: out.size].tobytes() or comm.size == 1, (dt, ordered, "reduce_scatter")
            for direct_kb in (float("inf"), 1e-3):  # packed into a bucket, or reduced in place
                ps = [np.zeros(12, dt), np.zeros(8, dt)]
                d = DistributedOptimizer(optim.SGD(ps, lr=0.0, master_weights=True), c, direct_kb=direct_kb)
                g = [rows[r][:12].astype(dt), rows[r][12:].astype(dt)]
                d.synchronize(g)
                got = np.concatenate(g)
                assert got.tobytes() == want.tobytes(), (dt, ordered, direct_kb, got)
            zs = [np.zeros(12, dt), np.zeros(8, dt)]
            z = ShardedOptimizer(optim.SGD, zs, c, lr=0.0, master_weights=True)
            shard = np.concatenate(z.synchronize([rows[r][:12].astype(dt), rows[r][12:].astype(dt)]))
            n = z.hi - z.lo
            assert shard[:n].tobytes() == want[z.lo : z.hi].tobytes(), (dt, ordered, "zero", shard)


SIZES = (1000, 7, 301, 2050)  # no size (and no sum of them) a multiple of the block


def case_sr8(comm) -> None:
    from optkern import optim
    from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

    lowp = dict(master_weights=True, stochastic_rounding=True, state_dtype="int8", seed=11)
    world = Communicator(comm.mpi, ordered=True)
    for cls, layout, hyper in (
        (optim.Adam, [{"params": [0, 1, 2, 3]}], dict(lr=1e-2)),
        (optim.AdamW, [{"params": [1, 2]}, {"params": [3, 0], "lr": 3e-3}], dict(lr=1e-2, block_size=64)),
        (optim.SGD, [{"params": [2, 0, 1, 3]}], dict(lr=1e-1, momentum=0.9)),
    ):
        rng = np.random.default_rng(0)
        init = [rng.standard_normal(n).astype(np.float16) for n in SIZES]
        zp, dp = [p.copy() for p in init], [p.copy() for p in init]

        def groups(ps, layout=layout):
            return [{**g, "params": [ps[i] for i in g["params"]]} for g in layout]

        z = ShardedOptimizer(cls, groups(zp), world, **hyper, **lowp)
        d = DistributedOptimizer(cls(groups(dp), **hyper, **lowp), world)
        order = [i for g in layout for i in g["params"]]  # (the params in group order)
        zp, dp = [zp[i] for i in order], [dp[i] for i in order]
        for s in range(4):
            rs = np.random.default_rng(100 * s + comm.rank)
            g = [(rs.standard_normal(p.size) * (1 + 3 * rs.random())).astype(np.float16) for p in zp]
            z.step([x.copy() for x in g])
            d.step(g)
            for i, (a, b) in enumerate(zip(zp, dp)):
                assert np.array_equal(a.view(np.uint16), b.view(np.uint16)), (cls.__name__, s, i)


def case_save_load(comm, where) -> None:
    import os

    import optkern
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    def make(seed=0):
        rng = np.random.default_rng(seed)
        ps = [rng.standard_normal(n).astype(np.float32) for n in (100, 7, 300)]
        return ps, ShardedOptimizer(optim.Adam, ps, comm, lr=1e-2)

    def grads(s):
        rs = np.random.default_rng(s)
        return [rs.standard_normal(n).astype(np.float32) for n in (100, 7, 300)]

    ps, z = make()
    for s in range(2):
        z.step(grads(s))
    full = os.path.join(where, "full.npz")
    plain = os.path.join(where, "plain.npz")
    shard = os.path.join(where, f"shard-{comm.rank}.npz")
    consolidated = z.consolidate_state_dict(to=0)
    if comm.rank == 0:
        optkern.save(full, opt=consolidated, params=ps)
        one = optim.Adam([p.copy() for p in ps], lr=1e-2)
        one.load_state_dict(consolidated)
        optkern.save(plain, opt=one)
    optkern.save(shard, opt=z, params=ps)
    comm.barrier()
    ref = [p.copy() for p in ps]
    z.step(grads(2))
    after = [p.copy() for p in ps]
    for path in (full, plain, shard):
        qs, q = make(5)
        optkern.load(path, opt=q) if path == plain else optkern.load(path, opt=q, params=qs)
        if path == plain:
            for a, b in zip(qs, ref):
                a[...] = b
        q.step(grads(2))
        for a, b in zip(qs, after):
            assert np.array_equal(a, b), path
    # a saved optimizer of another class: refused, naming what was saved
    if comm.rank == 0:
        optkern.save(plain, opt=optim.SGD([np.ones(3, np.float32)], lr=0.1))
    comm.barrier()
    with raises(ValueError, "holds a saved optimizer (SGD), cannot restore a ShardedOptimizer"):
        optkern.load(plain, opt=make()[1])


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
