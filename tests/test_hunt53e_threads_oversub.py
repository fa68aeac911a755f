"""More threads than cores: ``limit_threads(n)`` (the study's ``--threads n``) gives OpenBLAS at most
the process's CPUs, optkern's own OpenMP team ``n``.

OpenBLAS's threads busy-wait (idle workers and a GEMM's threads waiting on each other): past the
cores, a spinning thread holds the core the thread it waits for needs, and ``optkern study --quick
--threads 3`` on 2 cores had not finished after 19 min (9 s at 1 thread; bench/RESULTS.md, 53rd
session). These tests pin the policy, not a timing.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import optkern
from optkern import _cpu, threads

# The package under test, wherever it is (src/ here, site-packages in CI: src/ has no built module there)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))
CORES = len(os.sched_getaffinity(0))


def _numpy_uses_openblas() -> bool:
    blas = np.__config__.CONFIG.get("Build Dependencies", {}).get("blas", {})
    return "openblas" in str(blas.get("name", "")).lower()


@pytest.fixture
def blas():
    """Every loaded OpenBLAS (get, set); NumPy's own must be among them where NumPy links OpenBLAS."""
    libs = threads._loaded_openblas()
    if not libs:
        assert not _numpy_uses_openblas(), "NumPy links OpenBLAS but threads.py found none loaded"
        pytest.skip("NumPy does not link OpenBLAS here: limit_threads leaves a foreign BLAS alone")
    before = _cpu.get_num_threads(), [int(get()) for get, _ in libs]
    yield libs
    _cpu.set_num_threads(before[0])
    for (_, set_), k in zip(libs, before[1]):
        set_(k)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, threads.MAX_THREADS])
def test_blas_threads_is_n_capped_at_the_process_cpus(n):
    assert threads.blas_threads(n) == min(n, CORES)


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError)])
def test_blas_threads_refuses_what_limit_threads_refuses(bad, exc):
    with pytest.raises(exc, match=r"\bn\b"):
        threads.blas_threads(bad)


def test_limit_threads_past_the_cores_caps_openblas_not_optkern(blas):
    before = _cpu.get_num_threads(), [int(get()) for get, _ in blas]
    with optkern.limit_threads(CORES + 1):
        assert _cpu.get_num_threads() == CORES + 1  # optkern's workers sleep when idle: asked for, given
        assert [int(get()) for get, _ in blas] == [CORES] * len(blas)
        with optkern.limit_threads(1):  # (below the cores nothing changes)
            assert [int(get()) for get, _ in blas] == [1] * len(blas)
        assert [int(get()) for get, _ in blas] == [CORES] * len(blas)
    assert (_cpu.get_num_threads(), [int(get()) for get, _ in blas]) == before


def test_the_cap_follows_the_affinity_mask_not_the_machine(blas):
    # A child confined to one CPU (as taskset -c 0 runs it): --threads 3 gives BLAS one thread.
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "import optkern\nfrom optkern import _cpu, threads\n"
        "with optkern.limit_threads(3):\n"
        "    print(_cpu.get_num_threads(), sorted({int(g()) for g, _ in threads._loaded_openblas()}))\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("OMP_NUM_THREADS", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0] == "3 [1]"
