"""Block Gram-Schmidt and fixed-order combinations against the row-by-row / NumPy paths they replaced
(40th hunt, b), alternated in one process.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH=src python bench/block_orth_alternated.py [--repeats 7]

"old": block Lanczos's and Hutch++'s rows orthogonalized one ``lanczos_orthogonalize_`` call each (the
CPU module seen without ``lanczos_orthogonalize_rows_``, as the GPU's is), thick restart's and the Ritz
vectors' combinations by the former NumPy elementwise chunks (``_combine`` of commit cd2589f) and the
Ritz residuals by a GEMM. "new": this tree. "gemm" (thick restart only): the BLAS GEMM restart of
before the 39th session (thread-count dependent), for scale. Each case runs its arms in turn (order
reversed every other round), ``--repeats`` rounds; printed: medians [quartiles] and the ratio of
each round (median and range).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import types

import numpy as np

from optkern import _backend, _cpu, hessian
from optkern.hessian import _combine
from optkern.hessian.krylov import BlockKrylov

BASE = "cd2589f"


class _PerRow:
    def __getattr__(self, name):
        if name == "lanczos_orthogonalize_rows_":
            raise AttributeError(name)
        return getattr(_cpu, name)


def _old_combine():
    here = os.path.dirname(os.path.abspath(__file__))
    src = subprocess.run(
        ["git", "show", f"{BASE}:src/optkern/hessian/_combine.py"], cwd=here, capture_output=True, text=True, check=True
    ).stdout
    mod = types.ModuleType("optkern.hessian._combine_old")
    mod.__package__ = "optkern.hessian"
    exec(compile(src, "_combine_old.py", "exec"), mod.__dict__)
    return mod


class Paths:
    """Switches the module attributes between the old and the new paths."""

    def __init__(self):
        self.old = _old_combine()
        self.new = {name: getattr(_combine, name) for name in ("combine_rows_", "ritz_vectors", "combine")}
        self.backend = _backend.backend
        self.proxy = _PerRow()

    def use(self, which):
        if which == "gemm":  # (the thread-dependent GEMM restart of before commit cd2589f, for scale)
            self.use("new")
            _combine.combine_rows_ = _gemm_combine_rows
            return
        if which == "old":
            _combine.combine_rows_ = self.old.combine_rows_
            _combine.ritz_vectors = self.old.ritz_vectors
            _combine.combine = lambda C, V, transpose=False: C @ V  # (the former R @ S_last)
            b = self.backend
            _backend.backend = lambda *a: self.proxy if b(*a) is _cpu else b(*a)
        else:
            for name, f in self.new.items():
                setattr(_combine, name, f)
            _backend.backend = self.backend


def _gemm_combine_rows(Q, S):
    Q[: S.shape[1]] = S.T @ Q[: S.shape[0]]
    return Q


def mlp_op():
    from optkern.nn import MLP

    model = MLP([784, 256, 10], activation="tanh", dtype=np.float32)
    rng = np.random.default_rng(0)
    p = model.init_params(0)
    x, y = rng.standard_normal((128, 784), np.float32), rng.integers(0, 10, 128)
    return hessian.from_mlp(model, p, x, y)


def diag_op(n, dtype):
    d = (1.0 / (1.0 + np.arange(n) / 50.0) ** 2).astype(dtype)
    return hessian.from_hvp(lambda v: d * v, n, dtype, matmat=lambda V: d[:, None] * V)


def restart_case(n, dtype, m=60, keep=30):
    """One thick restart at n, basis m, keeping ``keep`` (the basis filled by block steps first)."""
    op = diag_op(n, dtype)
    kr = BlockKrylov(op, 4, m, None, 0)
    while not kr.full:
        kr.step()
    Q0, H0, m0, R0 = kr.Q.copy(), kr.H.copy(), kr.m, kr.R.copy()

    def run():
        kr.Q[...] = Q0
        kr.H[...] = H0
        kr.m, kr.R = m0, R0.copy()
        t0 = time.perf_counter()
        kr.restart(np.arange(keep))
        return time.perf_counter() - t0

    return run


def timed(f):
    def run():
        t0 = time.perf_counter()
        f()
        return time.perf_counter() - t0

    return run


def cases():
    H = mlp_op()
    two, three = ("old", "new"), ("old", "new", "gemm")
    yield (
        f"block Lanczos b=4, MLP 784-256-10 b128 (n={H.shape[0]}), 48 products",
        two,
        timed(lambda: hessian.top_eigenvalues(H, 4, "LA", block_size=4, max_steps=48, tol=1e-30)),
    )
    for dt in (np.float64, np.float32):
        yield f"thick restart n=1e6 m=60 keep 30 {np.dtype(dt).name}", three, restart_case(1_000_000, dt)
    D = diag_op(100_000, np.float64)
    yield "Hutch++ m=300, n=1e5 float64 (diagonal op)", two, timed(lambda: hessian.trace(D, "hutch++", 300, seed=1))


def alternated(cases, paths, description=""):
    """Times each case's arms in turn (the order reversed every other round) and prints medians
    [quartiles], old/new per round (median and range) and new/X for any further arm X."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--only", default="", help="run only the cases whose name contains this")
    a = ap.parse_args()
    print("threads: OPENBLAS", os.environ.get("OPENBLAS_NUM_THREADS"), "OMP", os.environ.get("OMP_NUM_THREADS"))
    print("load:", os.getloadavg())
    for name, arms, fn in cases:
        if a.only not in name:
            continue
        times = {w: [] for w in arms}
        for which in arms:  # warm-up
            paths.use(which)
            fn()
        for r in range(a.repeats):
            for which in arms if r % 2 == 0 else arms[::-1]:
                paths.use(which)
                times[which].append(fn())
        paths.use("new")
        q = {w: statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3 for w, v in times.items()}
        cells = ", ".join(f"{w} {1e3 * q[w][1]:.1f} ms [{1e3 * q[w][0]:.1f}, {1e3 * q[w][2]:.1f}]" for w in arms)
        ratios = sorted(o / n for o, n in zip(times["old"], times["new"]))
        extra = ""
        for other in arms[2:]:
            g = sorted(n / m for n, m in zip(times["new"], times[other]))
            extra += f", new/{other} {statistics.median(g):.2f}x (range {g[0]:.2f}-{g[-1]:.2f})"
        print(
            f"{name}: {cells}; old/new {statistics.median(ratios):.2f}x (range {ratios[0]:.2f}-{ratios[-1]:.2f}, "
            f"n={a.repeats} pairs){extra}",
            flush=True,
        )
    print("load:", os.getloadavg())


if __name__ == "__main__":
    alternated(cases(), Paths())
