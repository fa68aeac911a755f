"""``optkern bench dist`` (under ``mpiexec -n N``): the cost of data-parallel machinery.

- Gradient allreduce of 16M / 64M float32 split into 200 arrays: ``DistributedOptimizer
  .synchronize`` (arrays of 256 KiB or more reduced in place, smaller ones packed into
  fusion buckets of 25 MiB; and gradients written straight into ``grad_buffers()``)
  against one raw mpi4py ``Allreduce`` of the same bytes in one buffer: ``op="sum"``
  against the raw call, the mean against the raw call followed by the same division.
  Target: >= 0.9 of the raw throughput.
- ZeRO-1: optimizer state bytes per rank (Adam, 16M float32) against the unsharded
  optimizer's. Target: <= 1/world + 5%. Also the step time of both wrappers.

A time is the slowest rank's wall time of one call (each repeat starts at a barrier);
cases alternate within each repeat (in rotated order) so machine noise hits them alike. Median, and the
inter-quartile range / median as the spread.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from .._atomic import replace_atomically
from .timing import _stats

SIZES_M = (16, 64)
ARRAYS = 200


def _split(total: int, k: int, seed: int = 0) -> list:
    """``k`` odd-ish sizes summing to ``total`` (like a model's layers)."""
    w = np.random.default_rng(seed).uniform(0.2, 1.8, k)
    sizes = np.floor(w / w.sum() * total).astype(int)
    sizes[-1] += total - sizes.sum()
    return [int(s) for s in sizes]


def _time(comm, fn) -> float:
    comm.mpi.Barrier()
    t = time.perf_counter()
    fn()
    dt = (time.perf_counter() - t) * 1e3
    return comm.mpi.allreduce(dt, op=_mpi().MAX)


def _mpi():
    from mpi4py import MPI

    return MPI


def allreduce_rows(comm, quick: bool) -> list:
    rows = []
    for m in (2,) if quick else SIZES_M:  # quick: a smoke run
        rows += _allreduce_case(comm, m * 2**20, 3 if quick else 15)
    return rows


def _allreduce_case(comm, n: int, repeats: int) -> list:
    from .. import optim
    from ..distributed import DistributedOptimizer

    MPI = _mpi()
    sizes = _split(n, ARRAYS)
    params = [np.zeros(s, dtype=np.float32) for s in sizes]
    grads = [np.full(s, comm.rank + 1.0, dtype=np.float32) for s in sizes]
    mean = DistributedOptimizer(optim.SGD(params, lr=0.0), comm, bucket_mb=25)
    total = DistributedOptimizer(optim.SGD(params, lr=0.0), comm, bucket_mb=25, op="sum")
    views = mean.grad_buffers()
    for v in views:
        v.fill(comm.rank + 1.0)
    raw = np.full(n, comm.rank + 1.0, dtype=np.float32)
    world = np.float32(comm.size)

    def raw_mean():
        comm.mpi.Allreduce(MPI.IN_PLACE, raw, op=MPI.SUM)
        np.divide(raw, world, out=raw)

    raw_sum, raw_avg = "raw mpi4py Allreduce, one buffer", "raw Allreduce + divide (a mean), one buffer"
    cases = {  # name: (call, the raw case it is compared with)
        raw_sum: (lambda: comm.mpi.Allreduce(MPI.IN_PLACE, raw, op=MPI.SUM), raw_sum),
        raw_avg: (raw_mean, raw_avg),
        "synchronize op=sum, 200 arrays": (lambda: total.synchronize(grads), raw_sum),
        "synchronize (mean), 200 arrays": (lambda: mean.synchronize(grads), raw_avg),
        "synchronize (mean), grad_buffers() views": (lambda: mean.synchronize(views), raw_avg),
    }
    for fn, _ in cases.values():  # warm-up: page faults, MPI's shared-memory setup
        fn()
    samples: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for i in range(repeats):
        r = i % len(names)
        for k in names[r:] + names[:r]:  # rotated: no case always follows the same one
            samples[k].append(_time(comm, cases[k][0]))
    direct = sum(b.direct for b in mean._buckets)
    rows = []
    for k, s in samples.items():
        t, base = _stats(s), _stats(samples[cases[k][1]])
        rows.append(
            {
                "case": f"allreduce {n >> 20}M fp32: {k}",
                "median_ms": t.median_ms,
                "spread": t.spread,
                "repeats": t.repeats,
                "GB/s": 4 * n / t.median_ms / 1e6,
                "vs_raw": base.median_ms / t.median_ms,
                "buckets": mean.num_buckets,
                "direct": direct,
            }
        )
    return rows


def zero_rows(comm, quick: bool) -> list:
    from .. import optim
    from ..distributed import DistributedOptimizer, ShardedOptimizer

    n = (1 if quick else 16) * 2**20
    sizes = _split(n, ARRAYS, seed=1)
    rng = np.random.default_rng(comm.rank)
    g = [rng.standard_normal(s).astype(np.float32) for s in sizes]
    p_dp = [np.zeros(s, dtype=np.float32) for s in sizes]
    p_z = [np.zeros(s, dtype=np.float32) for s in sizes]
    dp = DistributedOptimizer(optim.Adam(p_dp, lr=1e-3), comm)
    z = ShardedOptimizer(optim.Adam, p_z, comm, lr=1e-3)
    g_dp = [a.copy() for a in g]  # synchronize overwrites these with the averages (fine for timing)
    dp.step(g_dp)
    z.step(g)
    full = sum(int(v.nbytes) for e in dp.state_dict()["state"].values() for k, v in e.items() if k != "step")
    mine = z.state_bytes()
    worst = comm.mpi.allreduce(mine, op=_mpi().MAX)
    rows = [
        {
            "case": f"ZeRO-1 Adam {n >> 20}M fp32: state bytes per rank (largest rank)",
            "bytes": worst,
            "unsharded_bytes": full,
            "fraction": worst / full,
            "target": 1 / comm.size + 0.05,
        }
    ]
    repeats = 3 if quick else 10
    samples: dict[str, list[float]] = {"data-parallel Adam step": [], "ZeRO-1 Adam step": []}
    for _ in range(repeats):
        samples["data-parallel Adam step"].append(_time(comm, lambda: dp.step(g_dp)))
        samples["ZeRO-1 Adam step"].append(_time(comm, lambda: z.step(g)))
    for k, s in samples.items():
        t = _stats(s)
        rows.append(
            {
                "case": f"{k}, {n >> 20}M fp32 in 200 arrays",
                "median_ms": t.median_ms,
                "spread": t.spread,
                "repeats": t.repeats,
            }
        )
    return rows


def _fmt(rows) -> str:
    out = []
    for r in rows:
        if "median_ms" in r:
            extra = ""
            if "GB/s" in r:
                extra = (
                    f"  {r['GB/s']:6.2f} GB/s  raw/this {r['vs_raw']:.3f}"
                    f"  ({r['buckets']} collectives, {r['direct']} of them in place)"
                )
            out.append(f"{r['case']:<62} {r['median_ms']:9.2f} ms ±{100 * r['spread']:4.0f}%{extra}")
        else:
            out.append(
                f"{r['case']:<62} {r['bytes'] / 2**20:9.1f} MiB of {r['unsharded_bytes'] / 2**20:.1f} "
                f"unsharded = {r['fraction']:.3f} (target <= {r['target']:.3f})"
            )
    return "\n".join(out)


def _write_json(args, rows: list, world: int, threads: int) -> None:
    from . import env

    # what the numbers depend on, as the other suites write it (timing.write_json); strict JSON
    meta = env.machine("cpu")
    meta.update(suites=["dist"], quick=bool(args.quick), threads=threads, world=world)
    with replace_atomically(args.json) as f:  # (whole or not at all, as the other suites)
        json.dump({"meta": meta, "world": world, "rows": rows}, f, indent=1, allow_nan=False)


def main(args) -> int:
    """Entry point of ``optkern bench dist`` (run it under ``mpiexec -n N``)."""
    from ..distributed import Communicator
    from ..study import UsageError
    from . import env

    # The suite times MPI on host (NumPy) arrays: a --device cuda run measured the CPU path and
    # said nothing about it.
    if args.device != "cpu":
        raise UsageError("dist: --device cuda is not supported (this suite times MPI on host arrays)")
    try:
        comm = Communicator(backend="mpi")
    except ImportError as e:  # no mpi4py: one line saying what to install, not the traceback
        raise UsageError(f"dist: {e}") from None
    error = None
    if comm.rank == 0:  # before the minutes of measuring, not after; every rank stops alike
        try:
            env.check_output(args.json)
        except UsageError as e:
            error = str(e)
    error = comm.bcast_object(error)
    if error is not None:
        raise UsageError(error)
    with env.threads(args.threads) as n:  # --threads was ignored here: the ZeRO-1 steps run optkern kernels
        return _main(args, comm, n)


def _main(args, comm, threads: int) -> int:
    if comm.rank == 0:
        print(
            f"optkern bench dist: {comm.size} ranks, MPI: {_mpi().Get_library_version().splitlines()[0].strip()}",
            flush=True,
        )
        if comm.size == 1:
            print("(one rank: run under `mpiexec -n 2 optkern bench dist` to measure communication)", flush=True)
    rows = allreduce_rows(comm, args.quick) + zero_rows(comm, args.quick)
    if comm.rank == 0:
        try:
            print(_fmt(rows))
            print(
                "ms: slowest rank's wall time, median over repeats; ±: inter-quartile range / median; "
                "raw/this: the raw case's time / this time (a sum against the raw Allreduce, a mean against the "
                "raw Allreduce + divide; >= 0.9 is the target)"
            )
        finally:  # (also when stdout's reader left, `| head`: the measurements asked for are kept)
            if args.json:
                _write_json(args, rows, comm.size, threads)
        if args.json:
            print(f"results: {args.json}")
    sys.stdout.flush()
    return 0
