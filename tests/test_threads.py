"""Thread-count controls and the OpenMP wait policy set at import."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import optkern


def test_set_num_threads_round_trip_and_results_unchanged():
    before = optkern.get_num_threads()
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(100_003).astype(np.float32)
    g = rng.standard_normal(100_003).astype(np.float32)
    out = []
    try:
        for n in (1, 2):
            optkern.set_num_threads(n)
            assert optkern.get_num_threads() == n
            p = p0.copy()
            optkern.optim.Adam([p], lr=1e-2).step([g])
            out.append(p)
    finally:
        optkern.set_num_threads(before)
    assert optkern.get_num_threads() == before
    assert np.array_equal(out[0], out[1]) and not np.array_equal(out[0], p0)


@pytest.mark.parametrize("work_per_element", [1, 8, 23])
@pytest.mark.parametrize("sizes", [[1 << 20], [3, 1 << 19, 70_000, 1 << 18]])
def test_parallel_passes_split_the_elements_evenly(sizes, work_per_element):
    # Kernels pass a cost (elements x work per element) to the chunk scheduler; the split must
    # still be by elements (a weighted cost once gave every chunk to thread 0: L-BFGS, Lanczos,
    # activations, dropout and the random generators ran on one core).
    from optkern import _cpu

    before = optkern.get_num_threads()
    try:
        optkern.set_num_threads(2)
        owners = np.array(_cpu.chunk_threads(sizes, work_per_element * sum(sizes)))
    finally:
        optkern.set_num_threads(before)
    chunk = 1 << 16
    lens = np.array([min(chunk, s - o) for s in sizes for o in range(0, s, chunk)])
    assert owners.shape == lens.shape and set(owners.tolist()) == {0, 1}
    assert np.all(np.diff(owners) >= 0)  # each thread a contiguous run
    share = lens[owners == 0].sum() / lens.sum()
    assert abs(share - 0.5) <= chunk / lens.sum(), share


def test_small_passes_stay_on_one_thread():
    from optkern import _cpu

    before = optkern.get_num_threads()
    try:
        optkern.set_num_threads(2)
        assert set(_cpu.chunk_threads([1 << 17], 1000)) == {0}  # below the parallel threshold
        assert _cpu.chunk_threads([], 0) == []
    finally:
        optkern.set_num_threads(before)


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("2", TypeError)])
def test_set_num_threads_rejects_bad_counts(bad, exc):
    with pytest.raises(exc, match="n"):
        optkern.set_num_threads(bad)


def test_limit_threads_restores_on_error():
    before = optkern.get_num_threads()
    with pytest.raises(RuntimeError), optkern.limit_threads(1):
        assert optkern.get_num_threads() == 1
        raise RuntimeError("boom")
    assert optkern.get_num_threads() == before


def test_import_leaves_the_environment_alone():
    # The passive wait policy is applied while the CPU module loads, then removed.
    code = "import os, optkern; print('OMP_WAIT_POLICY' in os.environ, os.environ.get('GOMP_SPINCOUNT'))"
    root = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")}
    env.update(GOMP_SPINCOUNT="123", PYTHONPATH=root)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "123"]
    env.pop("GOMP_SPINCOUNT")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "None"]


def _in_fresh_process(code, **env_set):
    root = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))
    env = {k: v for k, v in os.environ.items() if k != "OPTKERN_SERIAL_BELOW"}
    env.update(PYTHONPATH=root, OMP_NUM_THREADS="2", **env_set)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


_SPLIT = """
import json, optkern
from optkern import _cpu
bound = optkern.info()["serial_below"]
below = sorted(set(_cpu.chunk_threads([1 << 17], bound - 1))) if bound else [0]
print(json.dumps([bound, below, sorted(set(_cpu.chunk_threads([1 << 17], bound)))]))
"""


def test_the_serial_bound_is_measured_and_splits_the_work_there():
    # (the tests run with OPTKERN_SERIAL_BELOW=32768, conftest.py; here the measured bound: the wake-up
    # time of a parallel region times what one thread does meanwhile, cpp/parallel_cost.cpp)
    r = _in_fresh_process(_SPLIT)
    assert r.returncode == 0, r.stderr
    bound, below, at = json.loads(r.stdout)
    assert 1 << 15 <= bound <= 1 << 23
    assert below == [0] and at == [0, 1]


def test_the_serial_bound_can_be_fixed():
    r = _in_fresh_process(_SPLIT, OPTKERN_SERIAL_BELOW="5000")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [5000, [0], [0, 1]]


@pytest.mark.parametrize("bad", ["-1", "1e6", "many"])
def test_a_bad_serial_bound_is_refused_at_import(bad):
    r = _in_fresh_process("import optkern", OPTKERN_SERIAL_BELOW=bad)
    assert r.returncode != 0
    assert f"ValueError: OPTKERN_SERIAL_BELOW: expected a non-negative integer (work units), got {bad!r}" in r.stderr
