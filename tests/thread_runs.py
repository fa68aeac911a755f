"""Run a script under several BLAS / OpenMP thread counts: the determinism tests' harness."""

import os
import subprocess
import sys
import textwrap

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


# The estimators' operator in these tests: a diagonal of n = 70001 mixed-sign values, products
# that cost nothing (the bits tested are the estimator's own), in float64 then float32.
_DIAGONAL = """\
import hashlib
import numpy as np
from optkern import hessian

n = 70001
for dt in (np.float64, np.float32):
    d = (1.0 / (1.0 + np.arange(n) / 50.0) ** 2).astype(dt)
    d[::7] *= -0.5
    op = hessian.from_hvp(lambda v: d * v, n, dt, matmat=lambda V: d[:, None] * V)
"""


def on_diagonal_operators(body: str) -> str:
    """A script running ``body`` once per dtype, where ``np``, ``hessian``, ``hashlib``, ``n``,
    ``dt``, ``d`` and the operator ``op`` are defined."""
    return _DIAGONAL + textwrap.indent(textwrap.dedent(body), "    ")


# The parent's end of each script: wait up to 20 s for the child `pid` and print its exit code,
# or kill it and print "hung".
WAIT_CHILD = """
t0 = time.monotonic()
while time.monotonic() - t0 < 20:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("exit", os.waitstatus_to_exitcode(status))
        break
    time.sleep(0.02)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print("hung")
"""
