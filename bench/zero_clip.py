"""ZeRO-1 step with gradient clipping: its collectives, counted, and its time per step.

    OMP_NUM_THREADS=1 mpiexec -n 2 python -m mpi4py bench/zero_clip.py [--numel 10000000]
        [--arrays 20] [--steps 15] [--p 2 inf]

A ``ShardedOptimizer(Adam)`` over ``--numel`` float32 params in ``--arrays`` arrays of uneven
sizes: ``synchronize(grads)``, ``clip_grad_norm_(shard, 1.0, p, comm=)``, then the step inside
``skip_synchronize()``. The MPI calls of one step are counted (the communicator's mpi4py
communicator wrapped: every method call named as MPI names it) and printed by rank 0 with the
median and quartiles of the step time (and of the clip alone) over ``--steps`` steps, after two
warm-up steps; ``--p 0`` times the step without clipping.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


class _Counted:
    """An mpi4py communicator whose method calls are counted (``calls``), then forwarded."""

    def __init__(self, comm) -> None:
        self._comm, self.calls = comm, Counter()

    def __getattr__(self, name: str):
        attr = getattr(self._comm, name)
        if not callable(attr) or name.startswith(("Get_", "Is_", "get_", "is_")):
            return attr

        def call(*a, **k):
            self.calls[name] += 1
            return attr(*a, **k)

        return call

    def __eq__(self, other) -> bool:
        return self._comm == other


def _sizes(numel: int, arrays: int, seed: int = 0) -> list:
    w = np.random.default_rng(seed).uniform(0.5, 1.5, arrays)
    sizes = np.floor(numel * w / w.sum()).astype(int)
    sizes[0] += numel - sizes.sum()
    return [int(s) for s in sizes]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--numel", type=int, default=10_000_000)
    ap.add_argument("--arrays", type=int, default=20)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--p", nargs="+", default=["2", "inf"])
    a = ap.parse_args()

    import optkern
    from optkern import optim
    from optkern.distributed import Communicator, ShardedOptimizer

    comm = Communicator(backend="mpi", ordered=True)
    counted = _Counted(comm.mpi)
    sizes = _sizes(a.numel, a.arrays)
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    for p_arg in a.p:
        p = float(p_arg)
        z = ShardedOptimizer(optim.Adam, [x.copy() for x in params], comm, lr=1e-3)
        comm.mpi = counted  # (after the set-up: its own exchanges are not the step's)
        steps, clips = [], []
        for i in range(a.steps + 2):
            comm.mpi.Barrier()
            counted.calls.clear()
            t0 = time.perf_counter()
            shard = z.synchronize(grads)
            t1 = time.perf_counter()
            if p:
                optkern.clip_grad_norm_(shard, 1.0, norm_type=p, comm=comm)
            t2 = time.perf_counter()
            with z.skip_synchronize():
                z.step()
            t3 = time.perf_counter()
            if i >= 2:
                steps.append(t3 - t0)
                clips.append(t2 - t1)
        calls = dict(counted.calls)
        calls.pop("Barrier", None)
        comm.mpi = counted._comm
        if comm.rank == 0:
            q = statistics.quantiles(steps, n=4)
            c = statistics.quantiles(clips, n=4)
            print(
                f"p={p_arg}: world {comm.size}, {a.numel} params in {a.arrays} arrays, {a.steps} steps: "
                f"step median {1e3 * statistics.median(steps):.2f} ms [{1e3 * q[0]:.2f}, {1e3 * q[2]:.2f}], "
                f"clip median {1e3 * statistics.median(clips):.2f} ms [{1e3 * c[0]:.2f}, {1e3 * c[2]:.2f}]; "
                f"MPI calls a step: {sum(calls.values())} {calls}",
                flush=True,
            )


if __name__ == "__main__":
    main()
