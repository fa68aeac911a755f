"""Issue 17's Newton-CG rounds with a census of the process's threads: which pool each belongs to,
its share of the round's wall time running and waiting on a run queue, and how often it sat on the
main thread's CPU.

    PYTHONPATH=src python bench/cg_thread_census.py [--rounds 6] [--batch 128] [--reps 20] [--omp N] [--blas N]

``--omp N`` / ``--blas N`` set optkern's OpenMP count / OpenBLAS's count at run time, one pool apart
from the other. (The environment cannot: OpenBLAS reads OMP_NUM_THREADS too when OPENBLAS_NUM_THREADS
is unset, so OMP_NUM_THREADS=1 leaves one thread in both pools, NumPy's OpenBLAS starting no worker.)

Why: the benchmark's "slow state" (GGN product 1.9 ms instead of 1.45, CG overhead +15 % instead of
+3 %, within one process, on 2 vCPUs) comes and goes between rounds, and the suspects are the three
thread pools that share the two CPUs: NumPy's OpenBLAS workers (they spin, sched_yield, for about
2^28 cycles after each GEMM, so they are runnable through the whole product), SciPy's own OpenBLAS
copy (loaded by ``import scipy``: a second pool), and optkern's OpenMP workers (they sleep between
regions, OMP_WAIT_POLICY=PASSIVE, see ``optkern._backend``). A round's product and CG times printed
next to where each thread ran tell whether the slow rounds are the ones where a helper shares the
main thread's CPU. Threads are told apart by when they appear: after ``import numpy`` (NumPy's
OpenBLAS), after ``import scipy.linalg`` (SciPy's), after the first optkern kernel (OpenMP's).
Linux only (/proc/<pid>/task/<tid>/schedstat and stat). Each round alternates ``--reps`` times 10
products with one 10-iteration CG solve (damping 1e-3) of ``hessian.from_mlp`` on a 784-256-10 MLP.
"""

from __future__ import annotations

import argparse
import os
import time

PID = os.getpid()


def tids() -> set[int]:
    return {int(t) for t in os.listdir(f"/proc/{PID}/task")}


BEFORE = tids()
import numpy as np  # noqa: E402  (the threads it starts are told apart by when they appear)

NUMPY_BLAS = tids() - BEFORE
import scipy.linalg  # noqa: E402, F401

SCIPY_BLAS = tids() - BEFORE - NUMPY_BLAS
from optkern import hessian, threads  # noqa: E402
from optkern.nn import MLP  # noqa: E402


def schedstat(t: int) -> tuple[int, int]:
    """(ns on a CPU, ns runnable on a run queue) of thread ``t`` so far."""
    with open(f"/proc/{PID}/task/{t}/schedstat") as f:
        run, wait, _ = f.read().split()
    return int(run), int(wait)


def cpu_of(t: int) -> int:
    with open(f"/proc/{PID}/task/{t}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[36])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--omp", type=int, default=0, help="optkern's OpenMP threads (0: as started)")
    ap.add_argument("--blas", type=int, default=0, help="OpenBLAS threads, every copy loaded (0: as started)")
    args = ap.parse_args()
    if args.omp:
        threads.set_num_threads(args.omp)
    if args.blas:
        for _, set_ in threads._loaded_openblas():
            set_(args.blas)
    model = MLP([784, 256, 10], activation="tanh", dtype=np.float32)
    rng = np.random.default_rng(0)
    params = model.init_params(0)
    x, y = rng.standard_normal((args.batch, 784), np.float32), rng.integers(0, 10, args.batch)
    G = hessian.from_mlp(model, params, x, y, kind="ggn")
    v = rng.standard_normal(model.num_params).astype(np.float32)
    hessian.cg(G, v, rtol=0.0, maxiter=10, damping=1e-3)  # (starts the OpenMP team)
    label = {PID: "main"}
    for t in sorted(tids() - {PID}):
        label[t] = "numpy-blas" if t in NUMPY_BLAS else "scipy-blas" if t in SCIPY_BLAS else "openmp"
    print("threads:", ", ".join(f"{t} {n}" for t, n in sorted(label.items())), "| load", os.getloadavg())
    for rnd in range(args.rounds):
        start = {t: schedstat(t) for t in label}
        same = dict.fromkeys(label, 0)
        prod, cg = [], []
        t_round = time.perf_counter()
        for _ in range(args.reps):
            t0 = time.perf_counter()
            for _ in range(10):
                G.matvec(v)
            t1 = time.perf_counter()
            hessian.cg(G, v, rtol=0.0, maxiter=10, damping=1e-3)
            t2 = time.perf_counter()
            prod.append((t1 - t0) / 10)
            cg.append((t2 - t1) / 10)
            home = cpu_of(PID)
            for t in label:
                same[t] += cpu_of(t) == home
        wall = time.perf_counter() - t_round
        p, c = float(np.median(prod)), float(np.median(cg))
        parts = []
        for t, name in label.items():
            run, wait = (b - a for a, b in zip(start[t], schedstat(t)))
            parts.append(f"{name} run {run / 1e7 / wall:.0f}% wait {wait / 1e7 / wall:.0f}% same-cpu {same[t]}")
        print(
            f"{rnd} product {1e3 * p:.3f} ms, CG iteration {1e3 * c:.3f} ms ({100 * (c / p - 1):+.1f}%) | "
            + "; ".join(parts)
            + f" | load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
