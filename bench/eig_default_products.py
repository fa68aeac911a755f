"""Operator products of ``top_eigenvalues`` with its defaults against scipy's eigsh with its own (51st hunt, h292).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python bench/eig_default_products.py [--n 2000] [--tol 1e-6 1e-10]

The spectra of ``eig_restart_products.py`` (a clustered top: 20 eigenvalues 1e-3 apart; geometric; a flat
top: 30 within 1 %), ``k`` = 1, 5, 17. Arms: "old" -- the default before: no restart, stopped at
``max_steps = min(n, max(30 k, 200))`` products (the same code path, reached now by passing that
``max_steps``); "new" -- the defaults now (that basis, thick-restarted when full); eigsh with its
default ``ncv`` (``max(2 k + 1, 20)``), the same tolerance and start vector. Printed per case: products
(* not converged), the largest eigenvalue error against the sorted diagonal.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse.linalg as sla
from eig_restart_products import _operator, spectrum

from optkern.hessian import top_eigenvalues


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--tol", type=float, nargs="+", default=[1e-6, 1e-10])
    a = ap.parse_args()
    n = a.n
    print(f"n = {n}; products (* not converged), max |error|")
    print(f"{'spectrum':10} {'k':>2} {'tol':>5} {'old':>17} {'new':>17} {'eigsh':>17}")
    for kind in ("clustered", "geometric", "flat"):
        d = spectrum(kind, n)
        for k in (1, 5, 17):
            truth = np.sort(d)[::-1][:k]
            for tol in a.tol:
                cells = []
                for kw in ({"max_steps": min(n, max(30 * k, 200))}, {}):
                    r = top_eigenvalues(_operator(d), k=k, tol=tol, **kw)
                    err = float(np.abs(r.eigenvalues - truth).max())
                    cells.append(f"{r.steps:>6}{'' if r.converged else '*':1} {err:9.1e}")
                count = [0]
                v0 = np.random.default_rng(0).uniform(-1.0, 1.0, n)
                w = sla.eigsh(_operator(d, count), k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
                cells.append(f"{count[0]:>6}  {float(np.abs(np.sort(w)[::-1] - truth).max()):9.1e}")
                print(f"{kind:10} {k:>2} {tol:5.0e} " + " ".join(cells))


if __name__ == "__main__":
    main()
