"""MPI checks of optkern.distributed; run by tests/test_distributed.py as

    mpiexec -n 2 python -m mpi4py tests/mpi/dist_checks.py main DIR      (writes DIR/ckpt-*.pkl)
    mpiexec -n 4 python -m mpi4py tests/mpi/dist_checks.py reshard DIR   (and -n 1)

Each check raises AssertionError on failure; ``-m mpi4py`` then aborts the whole job.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import (
    OPTIMIZERS,
    SIZES,
    Checks,
    data,
    flat,
    init_params,
    numbers,
    rows_of,
    same_on_all_ranks,
)
from _runs import bitwise, close, dp_run, reference_run, zero_run
from checkpoint_checks import checkpoint_continue, checkpoint_write
from lowp_checks import compact_state_checkpoints, half_precision_data_parallel, half_precision_zero

import optkern
from optkern import hessian, nn, optim
from optkern.distributed import (
    Communicator,
    DistributedOptimizer,
    ShardedOptimizer,
    broadcast_params,
    check_same_params,
    distributed,
    global_share,
)

STEPS = 3


# ---- checks -------------------------------------------------------------------------------


def collectives(comm):
    W, r = comm.size, comm.rank
    xs = [np.random.default_rng(10 + k).standard_normal(37) for k in range(W)]
    for ordered in (False, True):
        c = Communicator(comm, backend="mpi", ordered=ordered)
        for op, ref in (("sum", sum(xs)), ("mean", sum(xs) / W), ("max", np.max(xs, 0)), ("min", np.min(xs, 0))):
            got = c.allreduce(xs[r].copy(), op)
            np.testing.assert_allclose(got, ref, rtol=1e-14, err_msg=f"allreduce {op}")
            same_on_all_ranks(c, got, f"allreduce {op} ordered={ordered}")
        if ordered:  # exactly the rank-order fold
            fold = xs[0].copy()
            for k in range(1, W):
                fold += xs[k]
            assert c.allreduce(xs[r].copy(), "sum").tobytes() == fold.tobytes()
        big = [np.random.default_rng(20 + k).standard_normal(W * 5).astype(np.float32) for k in range(W)]
        rs = c.reduce_scatter(big[r], "sum")
        np.testing.assert_allclose(rs, sum(big)[r * 5 : (r + 1) * 5], rtol=1e-6)
        if ordered:  # reduce_scatter adds in the same order as allreduce: same bits
            assert rs.tobytes() == c.allreduce(big[r].copy(), "sum")[r * 5 : (r + 1) * 5].tobytes()
        out = np.zeros(W * 37)
        c.allgather(xs[r], out)
        np.testing.assert_array_equal(out, np.concatenate(xs))
        inplace = np.zeros(W * 37)
        inplace[r * 37 : (r + 1) * 37] = xs[r]
        c.allgather(inplace[r * 37 : (r + 1) * 37], out=inplace)
        np.testing.assert_array_equal(inplace, np.concatenate(xs))
        b = xs[r].copy()
        c.bcast(b, root=W - 1)
        np.testing.assert_array_equal(b, xs[W - 1])
    c = Communicator(comm)
    counts = c.allreduce(np.array([r + 1, 1], dtype=np.int64), "sum")
    np.testing.assert_array_equal(counts, [W * (W + 1) // 2, W])
    for bad, exc in (
        (lambda: c.allreduce(np.ones(3), "prod"), ValueError),
        (lambda: c.reduce_scatter(np.ones(W * 2 + 1)), ValueError),
        (lambda: c.allreduce(np.ones(3)[::2]), ValueError),
        (lambda: c.allreduce([1.0, 2.0]), TypeError),
        (lambda: c.allreduce(np.ones(3, dtype=np.int64), "mean"), TypeError),
        (lambda: c.allgather(np.ones(3), out=np.zeros(3 * W + 1)), ValueError),
        (lambda: c.reduce_scatter(np.ones(2 * W), out=np.zeros(2, np.float32)), TypeError),
        (lambda: c.bcast(np.ones(2), root=W), ValueError),
        (lambda: Communicator(comm, backend="gloo"), ValueError),
    ):
        try:
            bad()
        except exc:
            pass
        else:
            raise AssertionError(f"expected {exc.__name__}")


def mismatch_is_a_clear_error(comm):
    r = comm.rank
    bad = [np.zeros(3), np.zeros((2, 2) if r != 1 else (2, 3))]
    try:
        check_same_params(bad, comm)
    except ValueError as e:
        assert "params[1]" in str(e) and "rank 1" in str(e), str(e)
    else:
        raise AssertionError("mismatched shapes passed the check")
    fewer = [np.zeros(3)] if r == 1 else [np.zeros(3), np.zeros(2)]
    for make in (
        lambda: DistributedOptimizer(optim.SGD(fewer, lr=0.1), comm),
        lambda: ShardedOptimizer(optim.SGD, fewer, comm, lr=0.1),
    ):
        try:
            make()
        except ValueError as e:
            assert "rank 1 holds 1 arrays" in str(e), str(e)
        else:
            raise AssertionError("a different parameter count passed the check")
    dtypes = [np.zeros(3, dtype=np.float32 if r == 1 else np.float64)]
    try:
        broadcast_params(dtypes, comm)
    except ValueError as e:
        assert "float32" in str(e), str(e)
    else:
        raise AssertionError("mismatched dtypes passed the check")


def broadcast(comm):
    ps = [np.random.default_rng(comm.rank).standard_normal(s) for s in SIZES]
    broadcast_params(ps, comm, root=comm.size - 1)
    want = [np.random.default_rng(comm.size - 1).standard_normal(s) for s in SIZES]
    bitwise(ps, want, "broadcast_params")


def data_parallel_equals_one_process(comm):
    counts = rows_of(comm.size)
    S, X = data(sum(counts), np.float64)
    S32, X32 = data(sum(counts), np.float32)
    for name, cls, hyper in OPTIMIZERS:
        ref = reference_run(cls, hyper, np.float64, STEPS, S, X)
        got = dp_run(Communicator(comm, backend="mpi"), cls, hyper, np.float64, STEPS, S, X, counts)
        close(got, ref, 1e-12, f"{name} float64 data-parallel vs one process")
        got = dp_run(Communicator(comm, backend="mpi"), cls, hyper, np.float64, STEPS, S, X, counts, direct_kb=1e-3)
        close(got, ref, 1e-12, f"{name} float64 data-parallel, every gradient reduced in place, vs one process")
        ref32 = reference_run(cls, hyper, np.float32, STEPS, S32, X32)
        got32 = dp_run(Communicator(comm, backend="mpi"), cls, hyper, np.float32, STEPS, S32, X32, counts)
        close(got32, ref32, 2e-5, f"{name} float32 data-parallel vs one process")


def ordered_is_bitwise_reproducible(comm):
    counts = rows_of(comm.size)
    S, X = data(sum(counts), np.float32)
    for name, cls, hyper in OPTIMIZERS:
        a = dp_run(Communicator(comm, ordered=True), cls, hyper, np.float32, STEPS, S, X, counts)
        b = dp_run(Communicator(comm, ordered=True), cls, hyper, np.float32, STEPS, S, X, counts, bucket_mb=25)
        bitwise(a, b, f"{name}: two ordered runs (different buckets)")
        c = dp_run(Communicator(comm, ordered=True), cls, hyper, np.float32, STEPS, S, X, counts, direct_kb=1e-3)
        bitwise(a, c, f"{name}: two ordered runs (packed, reduced in place)")
        same_on_all_ranks(comm, flat(a), f"{name}: ordered data-parallel params")


def zero_equals_data_parallel(comm):
    counts = rows_of(comm.size)
    for dtype in (np.float64, np.float32):
        S, X = data(sum(counts), dtype)
        for name, cls, hyper in OPTIMIZERS:
            c = Communicator(comm, ordered=True)
            dp = dp_run(c, cls, hyper, dtype, STEPS, S, X, counts)
            z, opt = zero_run(c, cls, hyper, dtype, STEPS, S, X, counts)
            if cls is optim.AdagradNorm:  # ||g||^2 summed per slice: rounded differently
                close(z, dp, 1e-12 if dtype == np.float64 else 2e-6, f"{name} ZeRO-1 vs data-parallel")
            else:
                bitwise(z, dp, f"{name} {np.dtype(dtype)} ZeRO-1 vs data-parallel (ordered)")
            same_on_all_ranks(comm, flat(z), f"{name} ZeRO-1 params")
            same_on_all_ranks(comm, flat(opt.params), f"{name} ZeRO-1 flat views")


def zero_state_is_split(comm):
    counts = rows_of(comm.size)
    S, X = data(sum(counts), np.float32)
    _, opt = zero_run(Communicator(comm), optim.Adam, dict(lr=1e-3), np.float32, 1, S, X, counts)
    mine = opt.state_bytes()
    total = sum(comm.allgather_object(mine))
    n = sum(int(np.prod(s)) for s in SIZES)
    assert total == 2 * 4 * n, (total, n)  # exp_avg + exp_avg_sq, float32, once over all ranks
    assert mine <= 2 * 4 * -(-n // comm.size), mine


def clipping(comm):
    counts = rows_of(comm.size)
    S, X = data(sum(counts), np.float64)
    for clip in ((0.5, 2.0), (0.05, "inf"), (0.3, 1.5)):
        for name, cls, hyper in (OPTIMIZERS[1], OPTIMIZERS[3], OPTIMIZERS[6]):
            ref = reference_run(cls, hyper, np.float64, STEPS, S, X, clip=clip)
            dp = dp_run(Communicator(comm, ordered=True), cls, hyper, np.float64, STEPS, S, X, counts, clip=clip)
            close(dp, ref, 1e-12, f"{name} clip {clip}: data-parallel vs one process")
            z, _ = zero_run(Communicator(comm, ordered=True), cls, hyper, np.float64, STEPS, S, X, counts, clip=clip)
            close(z, ref, 1e-12, f"{name} clip {clip}: ZeRO-1 (norm over slices, comm=) vs one process")
            same_on_all_ranks(comm, flat(z), f"{name} clip {clip}: ZeRO-1 params")
    # the norm itself: each rank's part of one vector
    v = np.random.default_rng(5).standard_normal(101)
    parts = np.array_split(v, comm.size)
    for p in (2.0, 1.0, 3.0, "inf"):
        mine = parts[comm.rank].copy()
        got = optkern.clip_grad_norm_([mine], 1e9, p, comm=Communicator(comm))
        want = np.max(np.abs(v)) if p == "inf" else np.sum(np.abs(v) ** p) ** (1 / p)
        np.testing.assert_allclose(got, want, rtol=1e-13, err_msg=f"global norm p={p}")


def curvature(comm):
    model = nn.MLP([5, 7, 3], activation="tanh", dtype=np.float64)
    params = model.init_params(seed=3)
    counts = rows_of(comm.size, 31)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((31, 5)).astype(params.dtype)
    y = rng.integers(0, 3, 31)
    lo = sum(counts[: comm.rank])
    xl, yl = x[lo : lo + counts[comm.rank]], y[lo : lo + counts[comm.rank]]
    H1 = hessian.from_mlp(model, params, x, y)
    Hd = hessian.from_mlp(model, params, xl, yl, comm=Communicator(comm))
    v = rng.standard_normal(model.num_params).astype(params.dtype)
    rtol = 1e-10 if params.dtype == np.float64 else 1e-4
    np.testing.assert_allclose(Hd @ v, H1 @ v, rtol=rtol, atol=rtol)
    _, g = model.loss_and_grad(params, x, y)
    runs = [
        ("trace-hutchinson", lambda H: hessian.trace(H, "hutchinson", 12, seed=1)),
        ("trace-hutch++", lambda H: hessian.trace(H, "hutch++", 12, seed=1)),
        ("lanczos", lambda H: hessian.lanczos(H, 10, seed=2)),
        ("top-eigenvalues", lambda H: hessian.top_eigenvalues(H, k=3, seed=2)),
        ("slq-density", lambda H: hessian.spectral_density(H, num_probes=2, steps=8, grid=50, seed=3)),
        ("gradient-concentration", lambda H: hessian.gradient_concentration(H, g, k=2)),
    ]
    for name, fn in runs:
        one, dist = numbers(fn(H1)), numbers(fn(Hd))
        assert one.size and one.shape == dist.shape, name
        np.testing.assert_allclose(dist, one, rtol=max(rtol, 1e-8), atol=max(rtol, 1e-8), err_msg=name)
        same_on_all_ranks(comm, dist, f"{name} on every rank")
    assert abs(global_share(counts[comm.rank], comm) - counts[comm.rank] / 31) < 1e-15
    wrapped = distributed(hessian.from_mlp(model, params, x, y), comm, 1.0 / comm.size)
    np.testing.assert_allclose(wrapped @ v, H1 @ v, rtol=rtol, atol=rtol)


def tiny_and_uneven_zero(comm):
    """Fewer elements than ranks (a rank owns only padding) and groups cut by the slices."""
    c = Communicator(comm, ordered=True)
    for sizes in ([(1,), (2,)], [(5,), (3,), (9,)]):
        rng = np.random.default_rng(9)
        base = [rng.standard_normal(s) for s in sizes]
        gs = [[rng.standard_normal(s) * (k + 1) for s in sizes] for k in range(3)]
        groups = [{"params": [b.copy() for b in base[:1]], "lr": 0.3}, {"params": [b.copy() for b in base[1:]]}]
        ref_groups = [{"params": [b.copy() for b in base[:1]], "lr": 0.3}, {"params": [b.copy() for b in base[1:]]}]
        opt = ShardedOptimizer(optim.Adam, groups, c, lr=0.1)
        ref = optim.Adam(ref_groups, lr=0.1)
        for g in gs:
            shard = opt.synchronize([a.copy() for a in g])
            assert shard and all(isinstance(a, np.ndarray) for a in shard)
            optkern.clip_grad_norm_(shard, 1e6, comm=c)  # every rank takes part, one without a slice too
            with opt.skip_synchronize():
                opt.step()
            ref.step([a.copy() for a in g])
        got = [p for grp in groups for p in grp["params"]]
        want = [p for grp in ref_groups for p in grp["params"]]
        bitwise(got, want, f"ZeRO-1 with groups, sizes {sizes}")
        sd = opt.consolidate_state_dict(to=None)
        bitwise(
            [sd["state"][i]["exp_avg_sq"] for i in range(len(sizes))],
            [ref.state_dict()["state"][i]["exp_avg_sq"] for i in range(len(sizes))],
            "consolidated state",
        )
        assert [g["lr"] for g in sd["param_groups"]] == [0.3, 0.1]


def _aliasing_grads() -> list:
    """Gradients of the right shapes where grads[1] lies inside grads[0]."""
    g = [np.arange(int(np.prod(s)), dtype=np.float64).reshape(s) for s in SIZES]
    g[1] = g[0][3:4]
    return g


def _strided_aliasing_grads() -> list:
    """grads[0] a strided view whose elements reach past its nbytes, grads[1] one of them."""
    g = [np.zeros(s) for s in SIZES]
    base = np.arange(20.0)
    g[0], g[1] = base[0:14:2], base[8:9]  # base[8] is grads[0][4]
    return g


def bad_input(comm):
    c = Communicator(comm)
    ps = init_params(np.float64)
    opt = DistributedOptimizer(optim.SGD(ps, lr=0.1), c)
    for g, exc, msg in (
        ([np.zeros(3)], ValueError, "expected 6 arrays"),
        ([np.zeros(s, dtype=np.float32) for s in SIZES], TypeError, "grads[0]"),
        ([np.zeros(s) for s in SIZES[:-1]] + [np.zeros(3)], ValueError, "grads[5]"),
        (_aliasing_grads(), ValueError, "grads[1] shares memory with grads[0]"),
        (_strided_aliasing_grads(), ValueError, "grads[1] shares memory with grads[0]"),
    ):
        before = [a.copy() for a in g]
        try:
            opt.step(g)
        except exc as e:
            assert msg in str(e), str(e)
            bitwise(g, before, f"{msg}: nothing written")
        else:
            raise AssertionError(msg)
    for make, exc in (
        (lambda: DistributedOptimizer(optim.SGD(ps, lr=0.1), c, bucket_mb=0), ValueError),
        (lambda: DistributedOptimizer(optim.SGD(ps, lr=0.1), c, direct_kb=0), ValueError),
        (lambda: DistributedOptimizer(optim.SGD(ps, lr=0.1), c, direct_kb="1"), ValueError),
        (lambda: DistributedOptimizer(optim.SGD(ps, lr=0.1), c, op="prod"), ValueError),
        (lambda: DistributedOptimizer(optim.SGD(ps, lr=0.1), c, grad_weight=-1.0), ValueError),
        (lambda: DistributedOptimizer(optim.SGD(ps, lr=0.1), c, grad_weight="x"), TypeError),
        (lambda: ShardedOptimizer(optim.SGD, [np.zeros(2), np.zeros(2, np.float32)], c), TypeError),
        (lambda: ShardedOptimizer("SGD", ps, c), TypeError),
    ):
        try:
            make()
        except exc:
            pass
        else:
            raise AssertionError(f"expected {exc.__name__}")
    with opt.skip_synchronize():
        try:
            opt.step([np.zeros(s) for s in SIZES])
        except RuntimeError as e:
            assert "synchronize" in str(e)
        else:
            raise AssertionError("skip_synchronize without synchronize")


def main():
    phase, outdir = sys.argv[1], sys.argv[2]
    from mpi4py import MPI

    comm = Communicator(MPI.COMM_WORLD, backend="mpi")
    run = Checks(comm)
    if phase == "main":
        for fn in (
            collectives,
            mismatch_is_a_clear_error,
            broadcast,
            bad_input,
            data_parallel_equals_one_process,
            ordered_is_bitwise_reproducible,
            zero_equals_data_parallel,
            zero_state_is_split,
            clipping,
            curvature,
            tiny_and_uneven_zero,
            compact_state_checkpoints,
            half_precision_data_parallel,
            half_precision_zero,
        ):
            run(fn)
        checkpoint_write.outdir = outdir
        run(checkpoint_write)
    elif phase == "reshard":
        checkpoint_continue.outdir = outdir
        run(checkpoint_continue)
        if comm.size > 2:
            for fn in (collectives, zero_equals_data_parallel, tiny_and_uneven_zero, curvature):
                run(fn)
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    run.done(phase)


if __name__ == "__main__":
    main()
