"""ShardedOptimizer (ZeRO-1) resuming and loading, its construction checks across ranks, and
overlapping buffers in the Communicator's collectives: each test launches this file under
``mpiexec -n 2 python -m mpi4py`` with one case (the functions below ``# ---- cases``), which
prints ``rank R: CASE ok`` on every rank. A rank that raises aborts the job (non-zero exit); a
rank that raises while the other waits in a collective hangs it (the launch's timeout)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 120  # s: a hang is a failure


def _run(case: str, tmp_path) -> None:
    run_case(__file__, case, 2, str(tmp_path), timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_resume_from_the_readme_checkpoint_continues_like_an_uninterrupted_run(tmp_path):
    """Save the shard with the params, restart with fresh ones, optkern.load(opt=, params=): the
    restored weights are what the next step updates (float64, and fp16 with master weights)."""
    _run("resume", tmp_path)


@pytest.mark.spawns
def test_params_changed_between_steps_are_what_the_next_step_updates(tmp_path):
    """broadcast_params after construction (documented: each step reads the arrays passed in)."""
    _run("changed_params", tmp_path)


@pytest.mark.spawns
def test_consolidated_state_with_wrong_shapes_is_refused_naming_the_entry(tmp_path):
    _run("load_shapes", tmp_path)


@pytest.mark.spawns
def test_consolidated_state_with_different_steps_in_a_group_is_refused(tmp_path):
    _run("load_steps", tmp_path)


@pytest.mark.spawns
def test_group_layout_and_hyper_parameters_must_agree_across_ranks(tmp_path):
    _run("group_layout", tmp_path)


@pytest.mark.spawns
def test_overlapping_buffers_in_reduce_scatter_and_allgather(tmp_path):
    _run("overlap", tmp_path)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _grads(p, k: int) -> list:
    """Gradients that depend on the params (a run restarted from other weights goes elsewhere)."""
    return [np.sin(a.astype(np.float64) * 3.0 + k).astype(a.dtype) for a in p]


def _init(dtype=np.float64) -> list:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(dtype) for s in ((5,), (2, 3), (4,))]


def case_resume(comm, tmp) -> None:
    import optkern
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    for dtype, hyper in ((np.float64, {}), (np.float16, {"master_weights": True})):
        ref = _init(dtype)
        z = ShardedOptimizer(optim.Adam, ref, comm, lr=0.05, **hyper)
        for k in range(4):
            z.step(_grads(ref, k))
        p = _init(dtype)
        z = ShardedOptimizer(optim.Adam, p, comm, lr=0.05, **hyper)
        for k in range(2):
            z.step(_grads(p, k))
        path = os.path.join(tmp, f"shard-{np.dtype(dtype)}-{comm.rank}.npz")
        optkern.save(path, opt=z, params=p)
        cons = z.consolidate_state_dict(to=None)
        for how in ("shard", "consolidated"):
            q = _init(dtype)  # restarted: fresh weights, fresh optimizer
            z2 = ShardedOptimizer(optim.Adam, q, comm, lr=0.05, **hyper)
            if how == "shard":
                optkern.load(path, opt=z2, params=q)
            else:
                z2.load_state_dict(cons)
                for a, b in zip(q, optkern.load(path)["params"]):
                    a[...] = b
            for k in range(2, 4):
                z2.step(_grads(q, k))
            for a, b in zip(q, ref):
                assert a.tobytes() == b.tobytes(), (how, dtype, a, b)


def case_changed_params(comm, tmp) -> None:
    from optkern import optim
    from optkern.distributed import DistributedOptimizer, ShardedOptimizer, broadcast_params

    p = [np.full(5, float(comm.rank + 1)), np.full(3, -float(comm.rank))]
    q = [a.copy() for a in p]
    z = ShardedOptimizer(optim.SGD, p, comm, lr=0.25)
    d = DistributedOptimizer(optim.SGD(q, lr=0.25), comm)
    broadcast_params(p, comm)  # after construction: every rank now holds rank 0's values
    broadcast_params(q, comm)
    g = [np.full(5, 2.0), np.full(3, 4.0)]
    z.step([a.copy() for a in g])
    d.step([a.copy() for a in g])
    for a, b in zip(p, q):
        assert a.tobytes() == b.tobytes(), (a, b)
    assert np.array_equal(p[0], np.full(5, 0.5)) and np.array_equal(p[1], np.full(3, -1.0)), p
    # a change after a step too (weights re-initialised in place)
    for a in p + q:
        a[...] = 7.0
    z.step([a.copy() for a in g])
    d.step([a.copy() for a in g])
    for a, b in zip(p, q):
        assert a.tobytes() == b.tobytes(), (a, b)


def case_load_shapes(comm, tmp) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    for shapes, saved_shapes, entry in (
        (
            [(5,), (12,)],
            [(5,), (3, 4)],
            "state_dict['state'][1]['exp_avg']: expected shape (12,) (its parameter's), got (3, 4)",
        ),
        (
            [(4, 3), (5,)],
            [(3, 4), (5,)],
            "state_dict['state'][0]['exp_avg']: expected shape (4, 3) (its parameter's), got (3, 4)",
        ),
        (
            [(5,), (2, 6)],
            [(5,), (3, 4)],
            "state_dict['state'][1]['exp_avg']: expected shape (2, 6) (its parameter's), got (3, 4)",
        ),
    ):
        u = optim.Adam([np.ones(s) for s in saved_shapes], lr=0.1)
        u.step([np.ones(s) for s in saved_shapes])
        sd = u.state_dict()
        plain = optim.Adam([np.ones(s) for s in shapes], lr=0.1)
        with _raises(ValueError, entry):  # the unsharded optimizer's words
            plain.load_state_dict(sd)
        z = ShardedOptimizer(optim.Adam, [np.ones(s) for s in shapes], comm, lr=0.1)
        with _raises(ValueError, entry):
            z.load_state_dict(sd)
        assert z.consolidate_state_dict(to=None)["state"] == {}  # nothing loaded


def case_load_steps(comm, tmp) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    for cls in (optim.Adam, optim.NAdam):
        p = [np.ones(4), np.ones(3)]
        u = cls(p, lr=0.1)
        u.step([np.ones(4), np.ones(3)])
        u.step([np.ones(4), None])  # param 1 skipped: its step stays 1
        sd = u.state_dict()
        z = ShardedOptimizer(cls, [a.copy() for a in p], comm, lr=0.1)
        with _raises(ValueError, "state_dict['state'][1]['step']: 1 differs from state_dict['state'][0]['step'] = 2"):
            z.load_state_dict(sd)
        assert z.consolidate_state_dict(to=None)["state"] == {}
    # the same params in groups of their own: loads, and continues as the unsharded optimizer
    p = [np.ones(4), np.ones(3)]
    u = optim.NAdam([{"params": [p[0]]}, {"params": [p[1]]}], lr=0.1)
    u.step([np.ones(4), np.ones(3)])
    u.step([np.full(4, 0.5), None])
    zp = [a.copy() for a in p]
    z = ShardedOptimizer(optim.NAdam, [{"params": [zp[0]]}, {"params": [zp[1]]}], comm, lr=0.1)
    z.load_state_dict(u.state_dict())
    for k in range(2):
        g = [np.full(4, 0.25 + k), np.full(3, -1.0 - k)]
        u.step([a.copy() for a in g])
        z.step([a.copy() for a in g])  # every rank the same gradient: their mean is exact
    for a, b in zip(zp, p):
        assert a.tobytes() == b.tobytes(), (a, b)


def case_group_layout(comm, tmp) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    r = comm.rank
    a, b = np.ones(5), np.ones(6)
    groups = [{"params": [a]}, {"params": [b]}] if r == 0 else [{"params": [a, b]}]
    with _raises(ValueError, "params: 1 parameter groups on rank 1, 2 on rank 0"):
        ShardedOptimizer(optim.AdagradNorm, groups, comm, lr=0.1)
    groups = [{"params": [a]}, {"params": [b], "lr": 0.5 if r == 1 else 0.1}]
    with _raises(ValueError, "params[1]: hyper-parameter 'lr' is 0.5 on rank 1, 0.1 on rank 0"):
        ShardedOptimizer(optim.Adam, groups, comm, lr=0.1)
    groups = [{"params": [a, b]}] if r == 0 else [{"params": [a]}, {"params": [b]}]  # same sizes, split
    with _raises(ValueError, "params: 2 parameter groups on rank 1, 1 on rank 0"):
        ShardedOptimizer(optim.SGD, groups, comm, lr=0.1)
    with _raises(ValueError, "params[0]: hyper-parameter 'weight_decay' is 0.01 on rank 1, 0.0 on rank 0"):
        ShardedOptimizer(optim.SGD, [a, b], comm, lr=0.1, weight_decay=0.01 * r)
    with _raises(ValueError, "state_dtype: 'int8' on rank 1, 'float32' on rank 0"):
        ShardedOptimizer(optim.Adam, [a.astype(np.float32)], comm, lr=0.1, state_dtype="int8" if r else "float32")
    # a rank refusing its own arrays: every rank raises (the other one names it), none waits
    ro = np.ones(6)
    ro.flags.writeable = r == 0
    with _raises(ValueError, "params[1]: array is read-only" + (" (on rank 1)" if r == 0 else "")):
        ShardedOptimizer(optim.SGD, [a, ro], comm, lr=0.1)
    # agreeing ranks still construct and step
    z = ShardedOptimizer(optim.AdagradNorm, [{"params": [a]}, {"params": [b], "lr": 0.5}], comm, lr=0.1)
    z.step([np.ones(5), np.ones(6)])
    assert np.all(b == b[0]) and np.all(a == a[0]), (a, b)


def case_overlap(comm, tmp) -> None:
    from optkern.distributed import Communicator

    r, w = comm.rank, comm.size
    for ordered in (False, True):
        c = Communicator(comm, backend="mpi", ordered=ordered)
        x = np.arange(2.0 * w) + 10 * r
        before = x.copy()
        with _raises(ValueError, "out: overlaps x"):
            c.reduce_scatter(x, out=x[2 * r : 2 * r + 2])  # its own block
        with _raises(ValueError, "out: overlaps x"):
            c.reduce_scatter(x, out=x[1:3])
        assert np.array_equal(x, before)
        # allgather: x at out[0:n] on every rank (rank 0's own block, an overlap elsewhere)
        out = np.zeros(3 * w)
        x = out[0:3]
        x[...] = r + 1
        got = c.allgather(x, out=out)
        assert np.array_equal(got, np.repeat(np.arange(1.0, w + 1), 3)), got
        out = np.zeros(3 * w)  # straddling two blocks
        x = out[1:4]
        x[...] = r + 1
        assert np.array_equal(c.allgather(x, out=out), np.repeat(np.arange(1.0, w + 1), 3))
        out = np.zeros(3 * w)  # the own block, in place, as before
        out[3 * r : 3 * r + 3] = r + 1
        assert np.array_equal(c.allgather(out[3 * r : 3 * r + 3], out=out), np.repeat(np.arange(1.0, w + 1), 3))


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
