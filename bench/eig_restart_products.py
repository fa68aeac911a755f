"""Operator products of ``top_eigenvalues`` near its minimum basis against scipy's eigsh (49th hunt, f).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python bench/eig_restart_products.py [--n 2000] [--old DIR]
        [--b 1 4] [--tol 1e-6 1e-10]

Diagonal operators with known spectra (a clustered top: 20 eigenvalues within 2 %; a geometric one,
0.9^i; a flat one: 30 within 1 %), ``max_basis = k + b + 1`` (the minimum and one), ``max_steps =
20000``; eigsh (ARPACK) on the same operator, tolerance and start vector with ``ncv = max_basis + b``
(the vectors the basis holds). ``--old DIR``: also the ``optkern`` package under DIR (a tree of an
earlier commit, run in a subprocess). Printed per case: products (converged or not), the largest
eigenvalue error against the sorted diagonal, wall seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import scipy.sparse.linalg as sla

CASES = [(kind, k, b, tol) for kind in ("clustered", "geometric", "flat") for k in (1, 5, 17) for b in (1, 4)
         for tol in (1e-6, 1e-10)]  # fmt: skip


def spectrum(kind: str, n: int) -> np.ndarray:
    if kind == "clustered":
        return np.concatenate([1.0 + 1e-3 * np.arange(20)[::-1], np.linspace(0.0, 0.9, n - 20)])
    if kind == "geometric":
        return 0.9 ** np.arange(n)
    return np.concatenate([[1.0], 1.0 - 1e-2 * np.arange(1, 30) / 30, np.linspace(0.0, 0.9, n - 30)])


def _operator(d: np.ndarray, count: list[int] | None = None) -> sla.LinearOperator:
    def matvec(x):
        if count is not None:
            count[0] += 1
        return d * x.ravel()

    return sla.LinearOperator((len(d), len(d)), matvec=matvec, matmat=lambda X: d[:, None] * X, dtype=np.float64)


def ours(n: int, cases: list) -> list[tuple[int, bool, float, float]]:
    from optkern.hessian import top_eigenvalues

    out = []
    for kind, k, b, tol in cases:
        d = spectrum(kind, n)
        t = time.perf_counter()
        r = top_eigenvalues(_operator(d), k=k, block_size=b, max_basis=k + b + 1, tol=tol, max_steps=20000)
        wall = time.perf_counter() - t
        out.append((r.steps, r.converged, float(np.abs(r.eigenvalues - np.sort(d)[::-1][:k]).max()), wall))
    return out


def eigsh(n: int, cases: list) -> list[tuple[int, bool, float, float]]:
    out = []
    for kind, k, b, tol in cases:
        d = spectrum(kind, n)
        count = [0]
        v0 = np.random.default_rng(0).uniform(-1.0, 1.0, n)
        t = time.perf_counter()
        w = sla.eigsh(_operator(d, count), k=k, which="LA", tol=tol, ncv=k + 2 * b + 1, v0=v0, maxiter=100000)[0]
        wall = time.perf_counter() - t
        out.append((count[0], True, float(np.abs(np.sort(w)[::-1] - np.sort(d)[::-1][:k]).max()), wall))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--old", default=None, help="a directory holding an earlier tree's optkern package")
    ap.add_argument("--b", type=int, nargs="+", default=[1, 4], help="block sizes")
    ap.add_argument("--tol", type=float, nargs="+", default=[1e-6, 1e-10], help="tolerances")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # (the --old subprocess)
    a = ap.parse_args()
    cases = [c for c in CASES if c[2] in a.b and c[3] in a.tol]
    if a.json:
        print(json.dumps(ours(a.n, cases)))
        return
    rows = {"new": ours(a.n, cases), "eigsh": eigsh(a.n, cases)}
    if a.old:
        env = dict(os.environ, PYTHONPATH=a.old)
        cmd = [sys.executable, __file__, "--n", str(a.n), "--json", "--b", *map(str, a.b), "--tol", *map(str, a.tol)]
        rows["old"] = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
    arms = [x for x in ("old", "new", "eigsh") if x in rows]
    print(f"n = {a.n}; products (* not converged at 20000), max |error|, wall s")
    print(f"{'spectrum':10} {'k':>2} {'b':>1} {'tol':>5} " + " ".join(f"{x:>27}" for x in arms))
    for i, (kind, k, b, tol) in enumerate(cases):
        cells = []
        for x in arms:
            p, ok, err, wall = rows[x][i]
            cells.append(f"{p:>6}{'' if ok else '*':1} {err:8.1e} {wall:8.2f}s")
        print(f"{kind:10} {k:>2} {b:>1} {tol:5.0e} " + "   ".join(cells))


if __name__ == "__main__":
    main()
