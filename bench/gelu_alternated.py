"""GELU forward (and its derivatives) on 16M elements: an old module, this one and torch, alternated.

    python bench/gelu_alternated.py --old DIR [--rounds 5] [--reps 3] [--threads 2]

DIR holds an older ``optkern`` package (a copy of src/optkern with its built ``_cpu`` .so). Each
round runs, per case, one process per implementation (old, new, torch), in that order; each process
warms up twice and times ``--reps`` calls: ``_cpu.activation_fwd`` into preallocated outputs, torch's
``gelu`` (and ``gelu_backward`` for the f' case: torch's training path). OMP_WAIT_POLICY=PASSIVE.
Printed: the median and min of rounds x reps per case (ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import numpy as np
from _alternate import child, timed_ms

CASES = [("float32", 0), ("float32", 1), ("float64", 0), ("float64", 2)]


def one(which: str, dt: str, order: int, reps: int, threads: int) -> list[float]:
    z = (np.random.default_rng(0).standard_normal(16 << 20) * 3).astype(dt)
    if which == "torch":
        import torch

        torch.set_num_threads(threads)
        zt, g = torch.from_numpy(z), torch.ones(z.shape, dtype=getattr(torch, dt))

        def f():
            torch.nn.functional.gelu(zt)
            if order:
                torch.ops.aten.gelu_backward(g, zt)
    else:
        from optkern import _cpu

        a = np.empty_like(z)
        d1 = np.empty_like(z) if order >= 1 else None
        d2 = np.empty_like(z) if order >= 2 else None

        def f():
            _cpu.activation_fwd("gelu", z, a, d1, d2)

    return timed_ms(f, reps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", help="directory holding the old optkern package")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # (child) which dtype order
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], a.one[1], int(a.one[2]), a.reps, a.threads)))
        return
    src = str(Path(__file__).resolve().parents[1] / "src")
    paths = {"old": a.old, "new": src, "torch": src}
    res: dict[tuple[str, int, str], list[float]] = {}
    for r in range(a.rounds):
        for dt, order in CASES:
            for which in ("old", "new", "torch"):
                if (which == "old" and not a.old) or (which == "torch" and order == 2):
                    continue
                args = ["--one", which, dt, str(order), "--reps", str(a.reps), "--threads", str(a.threads)]
                res.setdefault((dt, order, which), []).extend(child(__file__, args, paths[which], a.threads))
        print(f"round {r}: load {os.getloadavg()}", flush=True)
    for (dt, order, which), v in sorted(res.items()):
        print(f"{dt} order={order} {which:5s} median {statistics.median(v):8.1f} ms  min {min(v):8.1f}  n={len(v)}")


if __name__ == "__main__":
    main()
