"""The fused CG iteration's thread choice (cpp/cg_threads.hpp): without a fixed OPTKERN_SERIAL_BELOW
(the tests' conftest sets one), cg_iteration_ times one thread and all threads in turn and runs the
faster, re-timing the other now and then. Its calls switch between the two paths within one solve:
the solve must be the same bits as on one thread throughout, whatever the choice."""

import os
import subprocess
import sys

import optkern

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))

# n above 1M: 8 n work units exceed serial_below's largest bound (2^23), so the choice is made
# (and explored) on any machine; two solves of 40 iterations on 3 threads: the exploration (3 + 3
# calls), then re-timings of the path not chosen 16 and 32 calls apart.
# A solve of ``maxiter`` iterations on one thread, then ``solves`` more on the threads the test's
# environment gives: every result's bits the one-thread solve's (also tests/test_hunt48e_cg_threads.py).
SOLVES = """
import numpy as np, optkern
from optkern import _cpu, hessian
n = {n}
d = np.random.default_rng(0).uniform(1.0, 3.0, n).astype(np.float32)
A = hessian.from_hvp(lambda v: d * v, n, np.float32)
b = np.random.default_rng(1).standard_normal(n).astype(np.float32) * 5.0
kw = dict(rtol=0.0, maxiter={maxiter}, damping=1e-3)
with optkern.limit_threads(1):
    one = hessian.cg(A, b, **kw)
for _ in range({solves}):
    many = hessian.cg(A, b, **kw)
    assert many.x.tobytes() == one.x.tobytes()
    assert many.residual.tobytes() == one.residual.tobytes()
    assert many.direction.tobytes() == one.direction.tobytes()
    assert many.residual_norm == one.residual_norm and many.iterations == {maxiter}
"""
CODE = SOLVES.format(n="(1 << 20) + 3", maxiter=40, solves=2) + 'print("ok", optkern.get_num_threads())\n'


def test_switching_thread_counts_within_a_solve_keeps_the_bits():
    env = {k: v for k, v in os.environ.items() if k != "OPTKERN_SERIAL_BELOW"}
    env.update(PYTHONPATH=ROOT, OMP_NUM_THREADS="3")
    r = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "3"]
