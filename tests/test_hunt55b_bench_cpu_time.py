"""Every CPU row of `optkern bench` carries the process CPU time of its calls (55th session, h327).

On a shared 2-vCPU host the wall clock also measures whether a call's threads got their CPUs
(bench/RESULTS.md, 54th session, h320: 404-803 ms wall at a constant ~600 ms of CPU); the CPU time
(``timing.clocked``: every thread of the process) does not. The helper is checked against busy
loops of known CPU time on 1 and 2 threads, and against a native OpenMP kernel on 2 threads, whose
worker's time it must count: the kernel's work (its CPU time) is the same on 1 and 2 threads, and
the calling thread does only half of it on 2. (That CPU >= wall on 2 threads is not asserted: on
this loaded host one thread got half a CPU, 40 ms wall for 20 ms of CPU, and 2 threads no more.)
Then each suite, run in a subprocess at tiny sizes and few repeats, prints the CPU columns and
writes them to its JSON, for every row.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import optkern
from optkern import _cpu
from optkern.benchmarks.timing import Plan, clocked, time_cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))


def _spin(ms: float) -> None:
    """Burn ``ms`` of this thread's own CPU time (not the process's: another thread's does not count)."""
    t_end = time.thread_time() + ms / 1e3
    while time.thread_time() < t_end:
        pass


def test_one_thread_busy_loop():
    wall, cpu = clocked(lambda: _spin(30))
    assert cpu == pytest.approx(30, abs=4), (wall, cpu)
    assert wall >= 0.95 * cpu, (wall, cpu)  # one thread cannot spend more CPU than wall time


def test_two_thread_busy_loop_counts_both():
    def both():
        other = threading.Thread(target=_spin, args=(30,))
        other.start()
        _spin(30)
        other.join()

    wall, cpu = clocked(both)
    assert cpu == pytest.approx(60, rel=0.12), (wall, cpu)  # the calling thread alone spent 30


def test_time_cpu_gives_both_clocks_of_the_same_calls():
    t = time_cpu(lambda: _spin(5), Plan(warmup=1, min_repeats=5, max_repeats=5, budget_s=0.0))
    assert t.repeats == t.cpu.repeats == 5
    assert t.cpu.median_ms == pytest.approx(5, abs=1.5) and t.median_ms >= 0.95 * t.cpu.median_ms


@pytest.fixture
def restore_threads():
    before = _cpu.get_num_threads()
    yield
    _cpu.set_num_threads(before)


def _kernel_clocks(threads: int, out) -> tuple:
    """Median (wall, process CPU, calling thread's CPU) ms of a Philox fill of ``out`` on ``threads``."""
    _cpu.set_num_threads(threads)
    own: list = []

    def fill():
        t0 = time.thread_time()
        _cpu.random_uniform_(out, 1, 0)
        own.append((time.thread_time() - t0) * 1e3)

    fill()  # (pages touched, workers started)
    own.clear()
    walls, cpus = zip(*(clocked(fill) for _ in range(7)))
    return statistics.median(walls), statistics.median(cpus), statistics.median(own)


def test_native_openmp_kernel_on_two_threads(restore_threads):
    out = np.empty(1 << 22, np.float64)  # ~5 ms of CPU here: parallel whatever serial_below says
    wall1, cpu1, own1 = _kernel_clocks(1, out)
    wall2, cpu2, own2 = _kernel_clocks(2, out)
    assert own1 == pytest.approx(cpu1, rel=0.1), (own1, cpu1)  # 1 thread: the caller did it all
    assert own2 < 0.65 * cpu2, (own2, cpu2)  # 2 threads: the worker did about half, and it counts
    assert 0.8 < cpu2 / cpu1 < 1.6, (cpu1, cpu2)  # the same work
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cpu2 <= min(2, ncpu) * wall2 * 1.05 + 0.2, (wall2, cpu2)  # no more CPU than there was


# ---- each suite's rows, in a subprocess ----------------------------------------------------

# `optkern bench SUITE --quick` at tiny sizes (64K elements, norm's batches / 32) and 1 + 2 calls
# per implementation: seconds of CPU each (hvp: its curvature rows, which test_bench_cli's
# no-torch run covers, are left out here: a second of HVPs each at batch 128).
_CHILD = """
import sys
from optkern.benchmarks import hvp, kernels, norm, optim, rules, second_order, timing
timing.QUICK = timing.Plan(warmup=1, min_repeats=2, max_repeats=2, budget_s=0.0, collect=False)
for m in (optim, rules, kernels, norm, second_order):
    m.M = 1 << 16
norm.QUICK_DIVISOR = 32
hvp.curvature.rows = lambda *a, **k: []
from optkern.cli import main
sys.exit(main(["bench", sys.argv[1], "--quick", "--json", sys.argv[2], "--threads", "2"]))
"""

SUITES = ("optim", "rules", "norm", "hvp", "second", "kernels")


def _torch_present() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.spawns
@pytest.mark.parametrize("suite", SUITES)
def test_every_row_of_every_suite_has_the_cpu_columns(suite, tmp_path):
    path = tmp_path / "b.json"
    env = {**os.environ, "PYTHONPATH": ROOT}
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", _CHILD, suite, str(path)], capture_output=True, text=True, env=env, timeout=240
    )
    took = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr
    head = re.search(r"^case\s+optkern ms\s+best torch ms\s+torch/ok\s+CPU ms\s+CPU t/ok\s+GB/s", p.stdout, re.M)
    assert head, p.stdout
    rows = json.loads(path.read_text())["rows"]
    assert rows and {r["suite"] for r in rows} == {suite}
    with_torch = 0
    for r in rows:
        cpu = r["ours"]["cpu"]
        assert cpu is not None and 0 < cpu["q1_ms"] <= cpu["median_ms"] <= cpu["q3_ms"], r
        # the table's CPU ms column is this median (after the wall columns, before CPU t/ok)
        line = next(ln for ln in p.stdout.splitlines() if ln.startswith(f"{suite}: {r['case']} "))
        assert f" {cpu['median_ms']:.3f} ±" in line, line
        if r["torch"]:
            with_torch += 1
            best = r["torch"][r["best_torch_impl"]]["cpu"]
            assert r["cpu_ratio"] == pytest.approx(best["median_ms"] / cpu["median_ms"]), r
            assert f" {r['cpu_ratio']:.2f} " in line, line
        else:
            assert r["cpu_ratio"] is None, r
    assert (with_torch > 0) == _torch_present(), suite  # every suite compares with torch somewhere
    print(f"{suite}: {took:.1f} s wall")  # (-s shows how long each took)
