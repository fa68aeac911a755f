"""L1/L2 penalty gradient: optkern (one native call) vs NumPy and PyTorch loops.

    PYTHONPATH=src python bench/bench_regularize.py [--arrays 200] [--total 16000000]

Prints achieved bandwidth (12 B/elem fp32: read p, read g, write g) and ratios
measured in the same run. Not a test: timings on a shared machine are noisy.
"""
import argparse
import time

import numpy as np

import optkern.regularize as R


def best_of(f, reps):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arrays", type=int, default=200)
    ap.add_argument("--total", type=int, default=16_000_000)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    n = a.total // a.arrays
    ps = [rng.standard_normal(n).astype(np.float32) for _ in range(a.arrays)]
    gs = [rng.standard_normal(n).astype(np.float32) for _ in range(a.arrays)]
    nbytes = 12 * n * a.arrays

    def ours():
        R.add_penalty_grad_(ps, gs, 1e-5, 1e-4)

    def numpy_loop():
        for p, g in zip(ps, gs):
            g += 1e-4 * p + 1e-5 * np.sign(p)

    res = {"optkern": best_of(ours, a.reps), "numpy loop": best_of(numpy_loop, a.reps)}
    try:
        import torch

        tp = [torch.from_numpy(p) for p in ps]
        tg = [torch.from_numpy(g) for g in gs]

        def torch_foreach():
            torch._foreach_add_(tg, tp, alpha=1e-4)
            torch._foreach_add_(tg, torch._foreach_sign(tp), alpha=1e-5)

        res["torch foreach"] = best_of(torch_foreach, a.reps)
    except ImportError:
        pass
    for k, t in res.items():
        print(f"{k:14s} {t * 1e3:8.2f} ms  {nbytes / t / 1e9:6.1f} GB/s  optkern speed-up x{t / res['optkern']:.2f}")


if __name__ == "__main__":
    main()
