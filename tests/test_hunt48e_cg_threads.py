"""Issue 17: what a Newton-CG solve runs besides the Gauss-Newton product (hessian.cg over
``hessian.from_mlp(..., kind="ggn")``).

``cg_start_`` (r = b / s, r.r, p = r, x = 0: once per solve) ran a parallel region whenever its
vector passed serial_below -- right after the caller's products, whose OpenBLAS workers spin for
~0.1 s after each GEMM, so its region waited for a core (6-15 ms a solve at load 12-15 on the 2-vCPU
host, against ~50 us on the calling thread). It now runs on the calling thread or all threads as its
own timings decide (cpp/cg_threads.hpp), like the iteration's calls; ``_cpu.cg_thread_stats_`` tells
each call site's sizes and choices. Checked: the start is timed (a site of its own), a solve is the
same bits whichever path each call took, and the weight slices' tiled staging (8 x 8 float tiles
transposed in registers) gives the element-by-element copy's bits on every tile edge."""

import os
import subprocess
import sys

import numpy as np
import pytest

import optkern
from optkern import _cpu
from test_hunt36_cg_threads import SOLVES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))

# n above 2M: 4 n work units of the cold start exceed serial_below's largest bound (2^23), so its
# choice is made on any machine; eight solves: the exploration (3 + 3 calls), then the choice.
CODE = (
    SOLVES.format(n="(1 << 21) + 5", maxiter=2, solves=8)
    + """
stats = _cpu.cg_thread_stats_()
(start,) = [row for row in stats["start"] if row[0] == n and row[1] == 2]
assert start[2] == 8 and start[3], start  # (8 calls on 2 threads, then chosen)
assert [row[1] for row in stats["start"] if row[0] == n] == [2], stats  # (the 1-thread solve: not timed)
print("ok", sorted(stats))
"""
)


@pytest.mark.spawns
def test_start_runs_by_its_own_timed_thread_choice():
    env = {k: v for k, v in os.environ.items() if k != "OPTKERN_SERIAL_BELOW"}
    env.update(PYTHONPATH=ROOT, OMP_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("ok"), r.stdout
    assert "'start'" in r.stdout and "'iteration'" in r.stdout


def test_thread_stats_rows_are_typed():
    from optkern import hessian

    n = (1 << 21) + 5  # (above every serial bound: the start's choice is consulted, so it has a row)
    A = hessian.from_hvp(lambda v: 2.0 * v, n, np.float32)
    with optkern.limit_threads(2):
        hessian.cg(A, np.ones(n, np.float32), rtol=0.0, maxiter=1, damping=1e-3)
    stats = _cpu.cg_thread_stats_()
    assert isinstance(stats, dict) and "start" in stats, stats
    for site, rows in stats.items():
        assert site in ("start", "iteration", "iteration_known", "update_slice", "direction_sum")
        for n, threads, calls, chosen, parallel in rows:
            assert n >= 0 and threads >= 1 and calls >= 0
            assert isinstance(chosen, bool) and isinstance(parallel, bool)


# (cols, rows): whole 8 x 8 tiles, column tails, row tails (rows % 16 and % 8), both, tiny
SHAPES = [(8, 8), (16, 16), (784, 256), (9, 8), (8, 9), (13, 37), (7, 7), (1, 24), (24, 1), (3, 5), (40, 23)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposed_slice_is_the_contiguous_slices_bits(shape, dtype):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    t = rng.standard_normal(shape).astype(dtype)  # (cols, rows): the slice is t.T in C order
    n = t.size
    x, r, p = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    y = np.ascontiguousarray(t.T).ravel()
    outs = []
    for transposed, yy in ((True, t), (False, y)):
        xa, ra = x.copy(), r.copy()
        outs.append((_cpu.cg_update_slice_(xa, ra, p, yy, 0.375, 1e-3, transposed), xa, ra))
    (s1, x1, r1), (s2, x2, r2) = outs
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(r1, r2)
    # float64 reference of the update's residual: a misplaced element would move r far past rounding
    r64 = r.astype(np.float64) - 0.375 * (y.astype(np.float64) + np.float64(dtype(1e-3)) * p.astype(np.float64))
    np.testing.assert_allclose(r1, r64, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-5)
    assert s1 == pytest.approx(float(r1.astype(np.float64) @ r1.astype(np.float64)), rel=1e-12)
