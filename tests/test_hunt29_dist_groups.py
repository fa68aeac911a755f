"""Parameter groups added after a distributed wrapper was made (``add_param_group``).

DistributedOptimizer and ShardedOptimizer built their buckets / flat buffer from the groups at
construction; a group added later (torch's DDP + ZeroRedundancyOptimizer support it) was refused at
every step ("grads: expected 2 arrays (one per parameter), got 3"), the wrappers had no
``add_param_group``. Now both have one (collective; ZeRO re-shards the state, as the slices move),
and a group added to the wrapped optimizer directly, alike on every rank, is followed at the next
step. A group refused on one rank raises on every rank and is added on none.

Each test launches this file under ``mpiexec -n N python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 120  # s: a hang is a failure (a passing case takes seconds)


def _run(case: str, n: int = 2) -> None:
    run_case(__file__, case, n, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_dp_add_param_group_steps_as_one_process_and_round_trips():
    _run("dp_add", 3)


@pytest.mark.spawns
def test_zero_add_param_group_reshards_steps_as_one_process_and_round_trips():
    _run("zero_add", 3)


@pytest.mark.spawns
def test_zero_add_param_group_with_master_weights_and_more_ranks_than_elements():
    _run("zero_lowp", 4)


@pytest.mark.spawns
def test_group_added_directly_is_followed_through_a_grad_scaler():
    """amp.GradScaler checks the grads with the wrapper's _check_step before unscaling them: that
    check must take the layout the step will follow, not the buckets' old one."""
    _run("scaler")


@pytest.mark.spawns
def test_add_refused_on_one_rank_raises_on_every_rank_and_adds_on_none():
    _run("refused")


@pytest.mark.spawns
def test_group_added_directly_on_one_rank_only_raises_on_every_rank():
    _run("one_rank_direct")


# ---- cases (run under mpiexec) ------------------------------------------------------------------

SHAPES = [(5,), (2, 3)]
NEW = [(4,), (1,)]


def _init(shapes, dtype=np.float64, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _grads(p, k: int, rank: int) -> list:
    """Each rank its own gradients (the mean over ranks is what a step must see)."""
    return [(np.sin(a.astype(np.float64) * 3.0 + k) + rank).astype(a.dtype) for a in p]


def _resume_beside(comm, going, resumed, one, ref, how: str) -> None:
    """Steps 5 and 6 of the optimizer that went on and of the one resumed from its checkpoint (each
    ``(optimizer, params)``) beside the one-process ``one`` over ``ref``: all three the same bits."""
    for k in range(5, 7):
        for opt, arrays in (going, resumed):
            opt.step(_grads(arrays, k, comm.rank))
        one.step(_mean(ref, k, comm.size))
    _bitwise(resumed[1], ref, f"{how}: resumed")
    _bitwise(going[1], ref, f"{how}: went on")


def _mean(p, k: int, world: int) -> list:
    """The ranks' gradients summed in rank order, then divided (as the ordered collectives do; a
    float16 mean in float32, rounded once: a float16 sum past 65504 overflowed where the mean does not)."""
    rows = [_grads(p, k, r) for r in range(world)]
    out = []
    for i in range(len(p)):
        dt = rows[0][i].dtype
        wide = np.float32 if dt == np.float16 else dt
        s = rows[0][i].astype(wide)
        for r in range(1, world):
            s += rows[r][i].astype(wide)
        out.append((s / s.dtype.type(world)).astype(dt))
    return out


def _bitwise(a, b, what: str) -> None:
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.tobytes() == y.tobytes(), f"{what}[{i}]: {x} != {y}"


def _dp(comm, how: str):
    """(params, DistributedOptimizer, one-process reference params, reference AdamW) after two
    steps on SHAPES and one group NEW added (``how``: 'wrapper' or 'direct'), then three steps."""
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    p, ref = _init(SHAPES + NEW), _init(SHAPES + NEW)
    d = DistributedOptimizer(optim.AdamW([{"params": p[:2]}], lr=0.1), comm, bucket_mb=1e-5)
    one = optim.AdamW([{"params": ref[:2]}], lr=0.1)
    for k in range(2):
        d.step(_grads(p[:2], k, comm.rank))
        one.step(_mean(ref[:2], k, comm.size))
    group = {"params": p[2:], "lr": 0.05, "weight_decay": 0.0}
    (d if how == "wrapper" else d.optimizer).add_param_group(group)
    one.add_param_group({**group, "params": ref[2:]})
    for k in range(2, 5):
        if how == "direct" and k == 2:  # followed by synchronize as well as by step
            g = _grads(p, k, comm.rank)
            d.synchronize(g)
            with d.skip_synchronize():
                d.step(g)
        else:
            d.step(_grads(p, k, comm.rank))
        one.step(_mean(ref, k, comm.size))
    return p, d, ref, one


def case_dp_add(comm) -> None:
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    for how in ("wrapper", "direct"):
        p, d, ref, one = _dp(comm, how)
        _bitwise(p, ref, f"{how}: params")
        assert len(d.grad_buffers()) == 4 and d.grad_buffers()[3].shape == (1,)
        # the state round trip: into a wrapper made with every group, the steps go on alike
        sd = d.state_dict()
        q = [a.copy() for a in p]
        e = DistributedOptimizer(optim.AdamW([{"params": q[:2]}, {"params": q[2:]}], lr=0.1), comm)
        e.load_state_dict(sd)
        _resume_beside(comm, (d, p), (e, q), one, ref, how)


def case_zero_add(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    for how in ("wrapper", "direct"):
        p, ref = _init(SHAPES + NEW), _init(SHAPES + NEW)
        z = ShardedOptimizer(optim.Adam, [{"params": p[:2]}], comm, lr=0.1, amsgrad=True)
        one = optim.Adam([{"params": ref[:2]}], lr=0.1, amsgrad=True)
        for k in range(2):
            z.step(_grads(p[:2], k, comm.rank))
            one.step(_mean(ref[:2], k, comm.size))
        group = {"params": p[2:], "lr": 0.05}
        if how == "wrapper":
            z.add_param_group(group)
        else:
            z.optimizer.add_param_group(group)
            with _raises(RuntimeError, "added to the local optimizer"):
                z.state_dict()  # (before it is followed: a shard of whole arrays would not load)
        one.add_param_group({**group, "params": ref[2:]})
        for k in range(2, 5):
            z.step(_grads(p, k, comm.rank))
            one.step(_mean(ref, k, comm.size))
        _bitwise(p, ref, f"{how}: params")
        assert z.numel == 16 and len(z.param_groups) == 2
        # the consolidated state is the unsharded optimizer's; a shard round-trips exactly
        from optkern.distributed.agreement import state_digest

        assert state_digest(z.consolidate_state_dict(to=None)) == state_digest(one.state_dict())
        shard = z.state_dict()
        q = [a.copy() for a in p]
        e = ShardedOptimizer(optim.Adam, [{"params": q[:2]}, {"params": q[2:]}], comm, lr=0.1, amsgrad=True)
        e.load_state_dict(shard)
        assert state_digest(e.state_dict()) == state_digest(shard)
        _resume_beside(comm, (z, p), (e, q), one, ref, how)


def case_zero_lowp(comm) -> None:
    """float16 params with float32 masters, 4 ranks over 3 then 3 + 2 elements (ranks without a
    slice): the masters move with the slices; as one process's (which keeps the same masters)."""
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    p, ref = _init([(3,), (2,)], np.float16), _init([(3,), (2,)], np.float16)
    kw = dict(lr=0.01, master_weights=True)
    z = ShardedOptimizer(optim.AdamW, [p[0]], comm, **kw)
    one = optim.AdamW([ref[0]], **kw)
    for k in range(3):
        z.step(_grads(p[:1], k, comm.rank))
        one.step(_mean(ref[:1], k, comm.size))
    z.add_param_group({"params": [p[1]], "lr": 0.02})
    one.add_param_group({"params": [ref[1]], "lr": 0.02})
    for k in range(3, 6):
        z.step(_grads(p, k, comm.rank))
        one.step(_mean(ref, k, comm.size))
    _bitwise(p, ref, "float16 params")
    sd, osd = z.consolidate_state_dict(to=None), one.state_dict()
    for i in range(2):
        _bitwise([sd["state"][i]["master_param"]], [osd["state"][i]["master_param"]], f"master {i}")


def case_scaler(comm) -> None:
    from optkern import amp, optim
    from optkern.distributed import DistributedOptimizer, ShardedOptimizer

    for kind in ("dp", "zero"):
        p, q = [np.ones(6, np.float32)], np.ones(3, np.float32)
        if kind == "dp":
            opt = DistributedOptimizer(optim.SGD(p, lr=0.1), comm)
        else:
            opt = ShardedOptimizer(optim.SGD, p, comm, lr=0.1)
        scaler = amp.GradScaler(init_scale=4.0)
        scaler.step(opt, [np.full(6, 4.0 * (comm.rank + 1), np.float32)])  # (mean 1.5 after unscaling)
        scaler.update()
        opt.optimizer.add_param_group({"params": [q]})
        scaler.step(opt, [np.full(6, 4.0, np.float32), np.full(3, 8.0, np.float32)])
        scaler.update()
        np.testing.assert_array_equal(p[0], np.float32(np.float32(1 - np.float32(0.15)) - np.float32(0.1)))
        np.testing.assert_array_equal(q, np.full(3, np.float32(0.8)))


def _dp_and_zero(comm):
    from optkern import optim
    from optkern.distributed import DistributedOptimizer, ShardedOptimizer

    p, q = _init(SHAPES), _init(SHAPES)
    return [
        (p, DistributedOptimizer(optim.SGD(p, lr=0.1, momentum=0.9), comm)),
        (q, ShardedOptimizer(optim.SGD, q, comm, lr=0.1, momentum=0.9)),
    ]


def case_refused(comm) -> None:
    """Refused on one rank (its optimizer's check, another shape, dtype or value there): every rank
    raises, no rank keeps the group, and the steps go on with the groups as they were."""
    r = comm.rank
    for p, opt in _dp_and_zero(comm):
        name = type(opt).__name__
        # (ZeRO: its one flat buffer refuses the dtype on that rank; data-parallel: the layouts differ)
        dtype_error = TypeError if name == "ShardedOptimizer" else ValueError
        opt.step(_grads(p, 0, r))
        bad = [
            ({"params": _init(NEW, seed=1), "lr": -1.0 if r == 1 else 0.1}, ValueError, "'lr'"),
            ({"params": _init([(4,), (2,) if r == 1 else (1,)], seed=1)}, ValueError, "rank 1 holds shape (2,)"),
            ({"params": _init(NEW, np.float32 if r == 1 else np.float64, seed=1)}, dtype_error, "float32"),
        ]
        if name == "DistributedOptimizer":  # (ZeRO reads each rank's slice from its own arrays)
            bad.append(({"params": _init(NEW, seed=r)}, ValueError, "other values on rank 1"))
        for group, exc, text in bad:
            with _raises(exc, text):
                opt.add_param_group(group)
            assert len(opt.param_groups) == 1, f"{name}: the refused group stayed"
        opt.step(_grads(p, 1, r))  # the groups as they were: every rank steps
        q = _init(NEW, seed=1)
        opt.add_param_group({"params": q})
        opt.step(_grads(p + q, 2, r))
        got = comm.allgather_object([a.tobytes() for a in p + q])
        assert all(g == got[0] for g in got), f"{name}: the ranks' params differ"


def case_one_rank_direct(comm) -> None:
    """A group added to the wrapped optimizer on rank 1 only: the next step or synchronize raises
    on every rank naming the counts (no rank waits alone in a rebuild's exchange)."""
    r = comm.rank
    for p, opt in _dp_and_zero(comm):
        inner = opt.optimizer
        q = _init(NEW, seed=1)
        if r == 1:
            inner.add_param_group({"params": q})
        g = _grads(p + q, 0, r) if r == 1 else _grads(p, 0, r)
        text = "param_groups: 2 parameter groups on rank 1, 1 on rank 0"
        with _raises(ValueError, text):
            opt.step(g)
        with _raises(ValueError, text):
            opt.synchronize(g)
        with _raises(ValueError, "not yet followed (step or synchronize first)" if r == 1 else "(on rank 1)"):
            opt.add_param_group({"params": _init(NEW, seed=2)})
        if type(opt).__name__ == "DistributedOptimizer" and r == 1:
            with _raises(RuntimeError, "grad_buffers: a group was added"):
                opt.grad_buffers()
        if r == 0:  # added alike now: followed, every rank steps
            inner.add_param_group({"params": q})
        opt.step(_grads(p + q, 1, r))
        got = comm.allgather_object([a.tobytes() for a in p + q])
        assert all(x == got[0] for x in got), "the ranks' params differ"


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
