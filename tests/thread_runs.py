"""Run a script under several BLAS / OpenMP thread counts: the determinism tests' harness."""

import os
import subprocess
import sys

import optkern

THREADS = ((1, 1), (2, 2), (1, 2), (2, 1))  # (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS)


def outputs_by_threads(script: str) -> dict:
    """``script``'s stdout (run with ``python -c``, this optkern first on its path) by thread counts."""
    src = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))
    out = {}
    for blas, omp in THREADS:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas), OMP_NUM_THREADS=str(omp))
        env["PYTHONPATH"] = os.pathsep.join([src] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        out[(blas, omp)] = res.stdout
    return out
