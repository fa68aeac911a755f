"""Normalization backward (float32, weight given): an old module, this one and torch, alternated.

    python bench/normbwd_alternated.py --old DIR [--rounds 11] [--reps 3] [--threads 2]

DIR holds an older ``optkern`` package (a copy of src/optkern with its built ``_cpu`` .so). Each
round runs, per case, one process per implementation (old, new, torch), in that order; each process
warms up twice and times ``--reps`` calls of the backward alone: optkern's ``*_backward`` into
preallocated outputs, torch's autograd backward of the same op (``retain_graph``, the graph built
once). OMP_WAIT_POLICY=PASSIVE. Printed: per case the median and min over rounds of each process's
median of reps (ms), and new / old, new / torch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import numpy as np
from _alternate import child, timed_ms

# (name, kind, shape, groups)
CASES = [
    ("bn (32,64,4096)", "bn", (32, 64, 4096), 0),
    ("bn (256,64,32,32)", "bn", (256, 64, 32, 32), 0),
    ("bn (4096,512)", "bn", (4096, 512), 0),
    ("gn (32,64,64,64) G=32", "gn", (32, 64, 64, 64), 32),
    ("ln (4096,1024)", "ln", (4096, 1024), 0),
]


def _torch_fn(kind: str, shape: tuple[int, ...], groups: int, threads: int):
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32)).requires_grad_()
    dy = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    C = shape[1] if kind != "ln" else shape[-1]
    w = torch.from_numpy((1 + 0.1 * rng.standard_normal(C)).astype(np.float32)).requires_grad_()
    b = torch.zeros(C, requires_grad=True)
    if kind == "bn":
        y = torch.nn.functional.batch_norm(x, None, None, w, b, training=True)
    elif kind == "gn":
        y = torch.nn.functional.group_norm(x, groups, w, b)
    else:
        y = torch.nn.functional.layer_norm(x, (C,), w, b)
    return lambda: torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)


def _optkern_fn(kind: str, shape: tuple[int, ...], groups: int):
    from optkern import norm
    from optkern.norm import functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    C = shape[1] if kind != "ln" else shape[-1]
    w = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32)
    dx = np.empty_like(x)
    if kind == "bn":
        _, sv = norm.batch_norm(x, weight=w, eps=1e-5)
        return lambda: norm.batch_norm_backward(dy, x, w, sv, out=dx)
    if kind == "gn":
        _, sv = F.group_norm(x, groups, w, None, 1e-5)
        return lambda: F.group_norm_backward(dy, x, w, sv, out=dx)
    _, sv = F.layer_norm(x, (C,), w, None, 1e-5)
    return lambda: F.layer_norm_backward(dy, x, w, sv, out=dx)


def one(which: str, case: int, reps: int, threads: int) -> float:
    _, kind, shape, groups = CASES[case]
    f = _torch_fn(kind, shape, groups, threads) if which == "torch" else _optkern_fn(kind, shape, groups)
    return statistics.median(timed_ms(f, reps))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", help="directory holding the old optkern package")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", type=int, nargs="*", help="indices into CASES (default: all)")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # (child) which case
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), a.reps, a.threads)))
        return
    src = str(Path(__file__).resolve().parents[1] / "src")
    paths = {"old": a.old, "new": src, "torch": src}
    res: dict[tuple[int, str], list[float]] = {}
    cases = a.cases if a.cases else list(range(len(CASES)))
    for _ in range(a.rounds):
        for case in cases:
            for which in ("old", "new", "torch"):
                if which == "old" and not a.old:
                    continue
                args = ["--one", which, str(case), "--reps", str(a.reps), "--threads", str(a.threads)]
                res.setdefault((case, which), []).append(child(__file__, args, paths[which], a.threads))
    print(f"uptime: {os.getloadavg()}")
    for case in cases:
        name = CASES[case][0]
        med = {w: statistics.median(v) for (c, w), v in res.items() if c == case}
        lo = {w: min(v) for (c, w), v in res.items() if c == case}
        cols = "  ".join(f"{w} {med[w]:7.2f} (min {lo[w]:7.2f})" for w in med)
        ratios = f"new/torch {med['new'] / med['torch']:.2f}"
        if "old" in med:
            ratios = f"new/old {med['new'] / med['old']:.3f}  " + ratios
        print(f"{name:24s} {cols}  {ratios}")


if __name__ == "__main__":
    main()
