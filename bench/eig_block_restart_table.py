"""Operator products of restarted block ``top_eigenvalues`` against eigsh on the 52nd hunt's table (c).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python bench/eig_block_restart_table.py [--n 2000] [--tol 1e-6]

Diagonal spectra of ``eig_restart_products.py`` (a clustered top: 20 within 2 %; a flat one: 30 within 1 %),
k = 3 / 10, ``block_size`` 1 / 2 / 4, ``max_basis`` 20 / 40, ``max_steps`` 20000; eigsh (ARPACK) on the
same operator, tolerance and start vector with ``ncv = max_basis + block_size`` (the vectors our basis holds).
Printed per case: our products (* not converged), eigsh's, their ratio, and the whole blocks a full cycle
multiplies after a restart (``_restart.restart_count``): the polynomial degree each restart adds, which is
what a small basis costs a block method (the products are deterministic: no repeats, no spread).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as sla

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eig_restart_products import _operator, spectrum

from optkern.hessian import top_eigenvalues
from optkern.hessian._restart import restart_count


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--tol", type=float, default=1e-6)
    a = ap.parse_args()
    print(f"n = {a.n}, tol = {a.tol:.0e}; products (* not converged), eigsh ncv = max_basis + b")
    print(f"{'spectrum':10} {'k':>2} {'b':>1} {'p':>3} {'ours':>7} {'eigsh':>6} {'ratio':>6} {'blocks/cycle':>12}")
    for kind in ("clustered", "flat"):
        for k in (3, 10):
            for b in (1, 2, 4):
                for p in (20, 40):
                    d = spectrum(kind, a.n)
                    r = top_eigenvalues(_operator(d), k=k, block_size=b, max_basis=p, tol=a.tol, max_steps=20000)
                    count = [0]
                    v0 = np.random.default_rng(0).uniform(-1.0, 1.0, a.n)
                    sla.eigsh(_operator(d, count), k=k, which="LA", tol=a.tol, ncv=p + b, v0=v0, maxiter=100000)
                    blocks = (p - restart_count(k, p, p, b)) // b
                    mark = "" if r.converged else "*"
                    print(f"{kind:10} {k:>2} {b:>1} {p:>3} {r.steps:>6}{mark:1} {count[0]:>6} "
                          f"{r.steps / count[0]:6.1f} {blocks:>12}")  # fmt: skip


if __name__ == "__main__":
    main()
