"""CuPy checks of optkern.distributed under ``mpiexec -n 2 python -m mpi4py`` (skipped without GPUs).

Each rank uses GPU ``rank % device_count``. MPI on device memory is checked staged through
the host (any MPI) and, with OPTKERN_TEST_CUDA_AWARE_MPI=1, with device pointers; NCCL runs
where every rank has a GPU of its own (NCCL refuses two ranks on one device).
"""

from __future__ import annotations

import os
import sys

import cupy
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import (
    SIZES,
    Checks,
    data,
    flat,
    grads,
    init_params,
    rows_of,
    same_on_all_ranks,
)
from mpi4py import MPI

import optkern
from optkern import hessian, nn, optim
from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

WORLD = MPI.COMM_WORLD
NDEV = cupy.cuda.runtime.getDeviceCount()
cupy.cuda.Device(WORLD.Get_rank() % NDEV).use()
OWN_GPU = WORLD.allreduce(NDEV, op=MPI.MIN) >= WORLD.Get_size()


def communicators():
    out = [
        ("mpi-staged", Communicator(WORLD, backend="mpi")),
        ("mpi-staged-ordered", Communicator(WORLD, backend="mpi", ordered=True)),
    ]
    if os.environ.get("OPTKERN_TEST_CUDA_AWARE_MPI") == "1":
        out.append(("mpi-cuda-aware", Communicator(WORLD, backend="mpi", cuda_aware=True)))
    if OWN_GPU:
        out += [
            ("nccl", Communicator(WORLD, backend="nccl")),
            ("nccl-ordered", Communicator(WORLD, backend="nccl", ordered=True)),
        ]
    return out


def collectives_on_device(comm):
    W, r = comm.size, comm.rank
    xs = [np.random.default_rng(10 + k).standard_normal(2 * W + 3) for k in range(W)]
    s = cupy.cuda.Stream(non_blocking=True)
    for name, c in communicators():
        with s:  # the collectives follow work queued on CuPy's current stream
            d = cupy.asarray(xs[r]) * 1.0
            got = c.allreduce(d, "mean")
            np.testing.assert_allclose(got.get(), sum(xs) / W, rtol=1e-14, err_msg=name)
            same_on_all_ranks(comm, got.get(), name)
            m = c.allreduce(cupy.asarray(xs[r]), "max")
            np.testing.assert_array_equal(m.get(), np.max(xs, 0), err_msg=name)
            big = cupy.asarray(np.concatenate(xs[:W] * 1)[: W * 4]) + r
            rs = c.reduce_scatter(big, "sum")
            want = sum(np.concatenate(xs[:W])[: W * 4] + k for k in range(W))[r * 4 : (r + 1) * 4]
            np.testing.assert_allclose(rs.get(), want, rtol=1e-14, err_msg=name)
            out = cupy.zeros(W * xs[r].size)
            out[r * xs[r].size : (r + 1) * xs[r].size] = cupy.asarray(xs[r])
            c.allgather(out[r * xs[r].size : (r + 1) * xs[r].size], out=out)
            np.testing.assert_array_equal(out.get(), np.concatenate(xs), err_msg=name)
            b = cupy.asarray(xs[r])
            c.bcast(b, root=W - 1)
            np.testing.assert_array_equal(b.get(), xs[W - 1], err_msg=name)
        s.synchronize()


def optimizers_on_device(comm):
    counts = rows_of(comm.size)
    S, X = data(sum(counts), np.float32)
    lo = sum(counts[: comm.rank])
    s, x = S[lo : lo + counts[comm.rank]], X[lo : lo + counts[comm.rank]]
    w = counts[comm.rank] / sum(counts)
    for name, c in communicators():
        for cls, hyper in (
            (optim.AdamW, dict(lr=1e-2)),
            (optim.SGD, dict(lr=0.05, momentum=0.9)),
            (optim.AdagradNorm, dict(lr=0.5, b0=0.1)),
        ):
            host = init_params(np.float32)
            dp_h = DistributedOptimizer(
                cls(host, **hyper), Communicator(WORLD, backend="mpi", ordered=True), grad_weight=w
            )
            dev = [cupy.asarray(p) for p in init_params(np.float32)]
            dp_d = DistributedOptimizer(cls(dev, **hyper), c, grad_weight=w, bucket_mb=1e-3)
            # every non-empty gradient reduced in place on the device (direct buckets, no copies)
            inp = [cupy.asarray(p) for p in init_params(np.float32)]
            dp_i = DistributedOptimizer(cls(inp, **hyper), c, grad_weight=w, direct_kb=1e-3)
            assert all(b.direct for b in dp_i._buckets if b.index != [SIZES.index((0,))])
            zdev = [cupy.asarray(p) for p in init_params(np.float32)]
            z = ShardedOptimizer(cls, zdev, c, grad_weight=w, **hyper)
            for _ in range(3):
                dp_h.step(grads(host, s, x))
                g = grads([p.get() for p in dev], s, x)
                dp_d.step([cupy.asarray(a) for a in g])
                gi = [cupy.asarray(a) for a in grads([p.get() for p in inp], s, x)]
                dp_i.step(gi)
                assert sum(b.allocated() for b in dp_i._buckets) == 0  # reduced where they lie
                gz = grads([p.get() for p in zdev], s, x)
                shard = z.synchronize([cupy.asarray(a) for a in gz])
                optkern.clip_grad_norm_(shard, 1e6, comm=c)  # large max_norm: a no-op scale, a collective
                with z.skip_synchronize():
                    z.step()
            want = flat(host)
            for got, how in ((dev, "data-parallel"), (zdev, "ZeRO-1"), (inp, "data-parallel, reduced in place")):
                np.testing.assert_allclose(
                    flat([p.get() for p in got]),
                    want,
                    rtol=2e-5,
                    atol=1e-6,
                    err_msg=f"{name} {cls.__name__} {how} on device",
                )
            if c.ordered:
                np.testing.assert_array_equal(
                    flat([p.get() for p in inp]),
                    flat([p.get() for p in dev]),
                    err_msg=f"{name} {cls.__name__} in place vs packed, bitwise",
                )
            same_on_all_ranks(comm, flat([p.get() for p in zdev]), f"{name} ZeRO-1 params")
            if c.ordered and cls is not optim.AdagradNorm:
                np.testing.assert_array_equal(
                    flat([p.get() for p in zdev]),
                    flat([p.get() for p in dev]),
                    err_msg=f"{name} {cls.__name__} ZeRO-1 vs data-parallel, bitwise",
                )


def curvature_on_device(comm):
    model = nn.MLP([5, 7, 3], dtype=np.float64, xp=cupy)
    params = model.init_params(seed=3)
    counts = rows_of(comm.size, 31)
    rng = np.random.default_rng(4)
    x = cupy.asarray(rng.standard_normal((31, 5)))
    y = cupy.asarray(rng.integers(0, 3, 31))
    lo = sum(counts[: comm.rank])
    for name, c in communicators():
        Hd = hessian.from_mlp(model, params, x[lo : lo + counts[comm.rank]], y[lo : lo + counts[comm.rank]], comm=c)
        H1 = hessian.from_mlp(model, params, x, y)
        a = hessian.top_eigenvalues(Hd, k=2, seed=1).eigenvalues
        b = hessian.top_eigenvalues(H1, k=2, seed=1).eigenvalues
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, err_msg=name)
        same_on_all_ranks(comm, np.asarray(a), f"{name} eigenvalues")


def main():
    comm = Communicator(WORLD, backend="mpi")
    run = Checks(comm)
    for fn in (collectives_on_device, optimizers_on_device, curvature_on_device):
        run(fn)
    if comm.rank == 0:
        print(f"nccl: {'checked' if OWN_GPU else 'not checked (fewer GPUs than ranks)'}; sizes {SIZES}")
    run.done("cuda")


if __name__ == "__main__":
    main()
