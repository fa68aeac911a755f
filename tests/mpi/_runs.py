"""Training runs the MPI checks compare: one process, data-parallel, ZeRO-1 (same data, same steps)."""

from __future__ import annotations

import numpy as np
from _common import flat, grads, init_params

import optkern
from optkern.distributed import DistributedOptimizer, ShardedOptimizer


def my_rows(comm, counts, S, X):
    lo = sum(counts[: comm.rank])
    return S[lo : lo + counts[comm.rank]], X[lo : lo + counts[comm.rank]]


def reference_run(cls, hyper, dtype, steps, S, X, clip=None):
    params = init_params(dtype)
    opt = cls(params, **hyper)
    for _ in range(steps):
        g = grads(params, S, X)
        if clip is not None:
            optkern.clip_grad_norm_(g, *clip)
        opt.step(g)
    return params


def dp_run(comm, cls, hyper, dtype, steps, S, X, counts, clip=None, bucket_mb=1e-3, direct_kb=256):
    params = init_params(dtype)
    total = sum(counts)
    opt = DistributedOptimizer(
        cls(params, **hyper), comm, bucket_mb=bucket_mb, grad_weight=counts[comm.rank] / total, direct_kb=direct_kb
    )
    s, x = my_rows(comm, counts, S, X)
    for _ in range(steps):
        g = grads(params, s, x)
        if clip is None:
            opt.step(g)
        else:
            opt.synchronize(g)
            optkern.clip_grad_norm_(g, *clip)
            with opt.skip_synchronize():
                opt.step(g)
    return params


def zero_run(comm, cls, hyper, dtype, steps, S, X, counts, clip=None, params=None):
    params = init_params(dtype) if params is None else params
    total = sum(counts)
    opt = ShardedOptimizer(cls, params, comm, grad_weight=counts[comm.rank] / total, **hyper)
    s, x = my_rows(comm, counts, S, X)
    for _ in range(steps):
        g = grads(params, s, x)
        if clip is None:
            opt.step(g)
        else:
            shard = opt.synchronize(g)
            optkern.clip_grad_norm_(shard, *clip, comm=comm)
            with opt.skip_synchronize():
                opt.step(g)
    return params, opt


def close(a, b, rtol, what):
    np.testing.assert_allclose(flat(a), flat(b), rtol=rtol, atol=rtol * 10, err_msg=what)


def bitwise(a, b, what):
    fa, fb = flat(a), flat(b)
    assert fa.tobytes() == fb.tobytes(), f"{what}: not bitwise equal (max diff {np.max(np.abs(fa - fb))})"
