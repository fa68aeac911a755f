"""Thread-count controls and the OpenMP wait policy set at import."""

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
