"""ZeRO-1 with 8-bit optimizer states (``state_dtype="int8"``) equals the unsharded 8-bit optimizer.

The 8-bit states are quantized in blocks of ``block_size`` elements, one absmax scale per block,
the blocks of each parameter starting at its element 0. Each rank's slice of the flat buffer
was quantized in blocks starting at the slice's first element (and a slice cut through several
parameters made blocks straddling them): the codes, and so the steps, depended on the number of
ranks and were not the unsharded optimizer's. Now with 8-bit states each parameter starts at a
multiple of the block in the flat buffer and the slices are whole blocks: every block is a block
of one parameter, as in the unsharded optimizer, at any world size -- bit for bit, and a
consolidated checkpoint is the unsharded optimizer's state.

The tests launch this file under ``mpiexec -n N python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)
SIZES = (1000, 7, 301, 2050)  # no size (and no sum of them) a multiple of the block


@pytest.mark.spawns
@pytest.mark.parametrize("n", [1, 2, 4])
def test_zero1_int8_states_step_as_the_unsharded_8bit_optimizer_bit_for_bit(n):
    run_case(__file__, "zero8", n, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 4])
def test_zero1_int8_consolidated_state_is_the_unsharded_state_and_loads_back(n):
    run_case(__file__, "zero8_ckpt", n, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_zero1_int8_regroups_copies_and_reshards_as_the_unsharded_8bit_optimizer():
    run_case(__file__, "zero8_more", 4, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_a_shard_laid_out_for_another_state_dtype_is_refused():
    run_case(__file__, "zero8_shard_layout", 2, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _setups():
    from optkern import optim

    yield optim.Adam, [{"params": [0]}], dict(lr=1e-2, state_dtype="int8")  # one param
    yield optim.Adam, [{"params": [2]}], dict(lr=1e-2, state_dtype="int8")  # 2 blocks: ranks 2, 3 hold none
    yield optim.Adam, [{"params": [0, 1, 2]}, {"params": [3], "lr": 3e-3}], dict(lr=1e-2, state_dtype="int8")
    yield optim.AdamW, [{"params": [1, 2, 3, 0]}], dict(lr=1e-2, state_dtype="int8", block_size=64)
    yield optim.SGD, [{"params": [2, 0]}, {"params": [1, 3]}], dict(lr=1e-2, momentum=0.9, state_dtype="int8")
    # (a state that starts away from 0: the gaps' too, until a checkpoint's load zeroes them)
    yield optim.Adagrad, [{"params": [3, 1, 0]}], dict(lr=1e-2, initial_accumulator_value=0.3, state_dtype="int8")


def _make(comm, cls, layout, hyper, rng):
    """(the sharded params and optimizer, the unsharded replicas and optimizer), the same
    values on every rank."""
    from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

    init = [rng.standard_normal(n).astype(np.float32) for n in SIZES]
    zp, dp = [p.copy() for p in init], [p.copy() for p in init]

    def groups(ps):
        return [{**g, "params": [ps[i] for i in g["params"]]} for g in layout]

    z = ShardedOptimizer(cls, groups(zp), Communicator(comm.mpi, ordered=True), **hyper)
    d = DistributedOptimizer(cls(groups(dp), **hyper), Communicator(comm.mpi, ordered=True))
    order = [i for g in layout for i in g["params"]]
    return [zp[i] for i in order], z, [dp[i] for i in order], d


def _grads(params, step, rank):
    r = np.random.default_rng(100 * step + rank)  # another gradient on each rank
    return [(r.standard_normal(p.size) * (1 + 3 * r.random())).astype(np.float32) for p in params]


def case_zero8(comm) -> None:
    for cls, layout, hyper in _setups():
        zp, z, dp, d = _make(comm, cls, layout, hyper, np.random.default_rng(0))
        for s in range(4):
            g = _grads(zp, s, comm.rank)
            z.step([x.copy() for x in g])
            d.step(g)
            for i, (a, b) in enumerate(zip(zp, dp)):
                assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), (cls.__name__, hyper, s, i)


def case_zero8_ckpt(comm) -> None:
    from optkern import lowp
    from optkern.distributed import Communicator, ShardedOptimizer

    for cls, layout, hyper in _setups():
        zp, z, dp, d = _make(comm, cls, layout, hyper, np.random.default_rng(1))
        for s in range(3):
            g = _grads(zp, s, comm.rank)
            z.step([x.copy() for x in g])
            d.step(g)
        full = z.consolidate_state_dict(to=None)
        want = d.optimizer.state_dict()["state"]
        for i, entry in full["state"].items():
            for name, v in entry.items():
                if hasattr(v, "shape") and v.size > 1:
                    # the unsharded optimizer's 8-bit state, dequantized: the same float32 values
                    codes, scales = want[i][name], want[i][f"{name}_scale"]
                    block = want[i]["block"]
                    expect = lowp.dequantize_blockwise(codes, scales, block)
                    assert np.array_equal(v.view(np.uint32), expect.view(np.uint32)), (cls.__name__, i, name)
        # the consolidated state loaded into an unsharded optimizer (the one it came from, again)
        # and into a ShardedOptimizer at this world size: both go on as the unsharded run
        d.optimizer.load_state_dict(full)
        z2 = ShardedOptimizer(cls, _regroup(layout, zp), Communicator(comm.mpi, ordered=True), **hyper)
        z2.load_state_dict(full)
        for s in range(3, 5):
            g = _grads(zp, s, comm.rank)
            z2.step([x.copy() for x in g])
            d.step(g)
            for i, (a, b) in enumerate(zip(zp, dp)):
                assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), (cls.__name__, hyper, s, i)
        # saved on N ranks, loaded on 1 (each rank alone): as one unsharded process loading it
        from mpi4py import MPI

        ones = [[p.copy() for p in zp] for _ in range(2)]
        z1 = ShardedOptimizer(cls, _regroup(layout, ones[0]), Communicator(MPI.COMM_SELF), **hyper)
        one = cls(_regroup(layout, ones[1]), **hyper)
        z1.load_state_dict(full)
        one.load_state_dict(full)
        for s in range(5, 7):
            g = _grads(zp, s, comm.rank)
            z1.step([x.copy() for x in g])
            one.step(g)
            for i, (a, b) in enumerate(zip(*ones)):
                assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), (cls.__name__, hyper, s, i)


def case_zero8_more(comm) -> None:
    """At 4 ranks, block 64: a group added (the state re-sharded into the new slices), a copy
    (its views made again on the copied buffer, at the params' offsets), a rank's own shard
    loaded back, an unsharded optimizer's 8-bit state dict loaded, and a checkpoint of 2 ranks
    loaded on 4: each steps as the unsharded 8-bit optimizer."""
    import copy
    import pickle

    from optkern import optim
    from optkern.distributed import Communicator, ShardedOptimizer

    hyper = dict(lr=1e-2, state_dtype="int8", block_size=64)
    world = Communicator(comm.mpi, ordered=True)

    def fresh(seed=0):
        rng = np.random.default_rng(seed)
        return [rng.standard_normal(n).astype(np.float32) for n in (100, 7, 300)]

    def same(a, b, what):
        assert all(np.array_equal(x.view(np.uint32), y.view(np.uint32)) for x, y in zip(a, b)), what

    # a group added after two steps
    zp, dp = fresh(), fresh()
    ze, de = fresh(5)[:2], fresh(5)[:2]
    z, d = ShardedOptimizer(optim.Adam, zp, world, **hyper), optim.Adam(dp, **hyper)
    for s in range(2):
        g = _grads(zp, s, 0)
        z.step(g)
        d.step(g)
    z.add_param_group({"params": ze, "lr": 3e-3})
    d.add_param_group({"params": de, "lr": 3e-3})
    for s in range(2, 4):
        g = _grads(zp + ze, s, 0)
        z.step(g)
        d.step(g)
        same(zp + ze, dp + de, ("add_param_group", s))
    # copies, and this rank's own shard loaded into another optimizer
    zc, zk = copy.deepcopy(z), pickle.loads(pickle.dumps(z))
    zs_params = [p.copy() for p in zp + ze]
    zs = ShardedOptimizer(optim.Adam, zs_params[:3], world, **hyper)
    zs.add_param_group({"params": zs_params[3:], "lr": 3e-3})
    zs.load_state_dict(z.state_dict())
    for s in range(4, 6):
        g = _grads(zp + ze, s, 0)
        for o in (z, zc, zk, zs, d):
            o.step(g)
        same(zp + ze, dp + de, ("after the copies", s))
        same(zc.params, dp + de, ("deepcopy", s))
        same(zk.params, dp + de, ("pickle", s))
        same(zs_params, dp + de, ("own shard", s))
    # an unsharded 8-bit state dict (codes and scales) loaded
    zu = [p.copy() for p in dp + de]
    z = ShardedOptimizer(optim.Adam, [{"params": zu[:3]}, {"params": zu[3:], "lr": 3e-3}], world, **hyper)
    z.load_state_dict(d.state_dict())
    for s in range(6, 8):
        g = _grads(zu, s, 0)
        z.step(g)
        d.step(g)
        same(zu, dp + de, ("unsharded state dict", s))
    # 2 ranks train and consolidate, 4 load
    half = Communicator(comm.mpi.Split(comm.rank // 2, comm.rank), ordered=True)
    zp, dp = fresh(), fresh()
    z, d = ShardedOptimizer(optim.Adam, zp, half, **hyper), optim.Adam(dp, **hyper)
    for s in range(3):
        g = _grads(zp, s, 0)
        z.step(g)
        d.step(g)
    full = comm.mpi.bcast(z.consolidate_state_dict(to=None), root=0)
    z = ShardedOptimizer(optim.Adam, zp, world, **hyper)
    z.load_state_dict(full)
    for s in range(3, 5):
        g = _grads(zp, s, 0)
        z.step(g)
        d.step(g)
        same(zp, dp, ("2 ranks to 4", s))


def case_zero8_shard_layout(comm) -> None:
    """Params of 255 and 768 elements on 2 ranks: 8-bit states (block 256) put the second at flat
    256, float32 ones at 255 -- with the same world, numel and chunk (512), which were all a shard's
    layout said. A shard (``state_dict``) of one loaded into the other passed that check; only the
    last rank's local optimizer refused it ("expected 511 elements (like its parameter), got 512"),
    a slice's length saying nothing of the layout. The layout now holds the params' offsets: refused
    on every rank, naming them and what to load instead; every rank's state as it was."""
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    def make(**lp):
        ps = [np.linspace(-1, 1, n).astype(np.float32) for n in (255, 768)]
        z = ShardedOptimizer(optim.Adam, ps, comm, lr=1e-2, **lp)
        z.step([np.ones(p.size, np.float32) for p in ps])
        return z

    eight, plain = make(state_dtype="int8"), make()
    assert eight.chunk == plain.chunk == 512
    for src, dst in ((eight, plain), (plain, eight)):
        before = dst.state_dict()
        with raises(ValueError, "state_dict['zero']['offsets']: is"):
            dst.load_state_dict(src.state_dict())
        after = dst.state_dict()["optimizer"]["state"]
        for k, entry in before["optimizer"]["state"].items():
            for name, v in entry.items():
                assert np.array_equal(np.asarray(v), np.asarray(after[k][name])), (k, name)
        dst.load_state_dict(src.consolidate_state_dict(to=None))  # (a consolidated one: re-laid out)


def _regroup(layout, ordered):
    """``layout``'s groups over ``ordered`` (the params in group order)."""
    out, k = [], 0
    for g in layout:
        n = len(g["params"])
        out.append({**g, "params": ordered[k : k + n]})
        k += n
    return out


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
