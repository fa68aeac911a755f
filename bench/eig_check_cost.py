"""Cost of one convergence check's small eigh: np.linalg.eigh as it is against hessian._eigh (one BLAS thread).

    PYTHONPATH=src python bench/eig_check_cost.py [--sizes 20 40 60 100 200] [--busy 2] [--repeats 7]

Run it with OPENBLAS_NUM_THREADS unset (OpenBLAS then takes every core) and with it 1, to see what the
thread pool costs. ``--busy N`` starts N processes that spin for the length of the run (the oversubscription
of another job, or of our own OpenMP threads, on the same cores). Per size: the median time per call over
``--repeats`` batches, [min, max] of the batches, NumPy's and ours alternated batch by batch. Then the
wall time of ``top_eigenvalues`` (k = 5, n = 2000, a flat top, basis 100) with either in its checks
(``_eigh.eigh`` replaced by NumPy's own for the "numpy" arm), alternated the same way.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np
import scipy.sparse.linalg as sla

from optkern.hessian import _eigh, top_eigenvalues


def _spin(seconds: float) -> None:
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass


def _projected(m: int, rng) -> np.ndarray:
    """An arrow-plus-tridiagonal matrix, as a thick-restarted Lanczos basis holds (dense for eigh)."""
    H = np.diag(rng.uniform(0.0, 1.0, m)) + np.diag(rng.uniform(0.1, 1.0, m - 1), 1)
    H[: m // 3, m // 3] = rng.uniform(-0.1, 0.1, m // 3)
    return np.triu(H) + np.triu(H, 1).T


def _batch(fn, H, calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn(H)
    return (time.perf_counter() - t) / calls


def _top(n: int) -> None:
    d = np.concatenate([[1.0], 1.0 - 1e-2 * np.arange(1, 30) / 30, np.linspace(0.0, 0.9, n - 30)])
    op = sla.LinearOperator((n, n), matvec=lambda x: d * x.ravel(), matmat=lambda X: d[:, None] * X, dtype=float)
    top_eigenvalues(op, k=5, max_basis=100, max_steps=5000, tol=1e-10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 60, 100, 200])
    ap.add_argument("--busy", type=int, default=0, help="spinning processes beside the run")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.05, help="per batch (calls = this / a first call)")
    a = ap.parse_args()
    spinners = [mp.Process(target=_spin, args=(3600.0,), daemon=True) for _ in range(a.busy)]
    for p in spinners:
        p.start()
    print(
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')} busy={a.busy} cores={os.cpu_count()}"
    )
    rng = np.random.default_rng(0)
    arms = {"numpy": np.linalg.eigh, "optkern": _eigh.eigh}
    try:
        for m in a.sizes:
            H = _projected(m, rng)
            calls = max(3, int(a.seconds / max(_batch(_eigh.eigh, H, 1), 1e-6)))
            times: dict[str, list[float]] = {x: [] for x in arms}
            for _ in range(a.repeats):
                for x, fn in arms.items():
                    times[x].append(_batch(fn, H, calls) * 1e6)
            cells = [f"{x} {np.median(t):8.0f} us [{min(t):.0f}, {max(t):.0f}]" for x, t in times.items()]
            print(f"m = {m:4}: " + "   ".join(cells))
        walls: dict[str, list[float]] = {x: [] for x in arms}
        saved = _eigh.eigh
        for _ in range(3):
            for x, fn in arms.items():
                _eigh.eigh = fn
                t = time.perf_counter()
                _top(2000)
                walls[x].append(time.perf_counter() - t)
        _eigh.eigh = saved
        print(
            "top_eigenvalues k=5 n=2000 max_basis=100: "
            + "   ".join(f"{x} {np.median(t):.2f} s [{min(t):.2f}, {max(t):.2f}]" for x, t in walls.items())
        )
    finally:
        for p in spinners:
            p.terminate()


if __name__ == "__main__":
    main()
