"""The NumPy memory pool of optkern's calls (optkern/_pool.py, cpp/pool.cpp): which arrays use it,
that reused blocks behave as fresh ones (zeros, resize), its limit, and that the MLP's products
give the same bits with and without it while page-faulting nothing per call."""

import os
import resource
import subprocess
import sys
import threading

import numpy as np
import pytest

import optkern
from optkern import _pool, hessian
from optkern.nn import MLP

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name

BIG = 1 << 18  # float64 elements: 2 MiB, far above the pooled minimum (64 KiB)


@pytest.fixture
def pool_limit():
    """Restores the limit a test changes (and frees what the test left cached)."""
    before = _pool.stats()["limit"]
    yield
    _pool.set_limit(before)
    _pool.release()


def test_arrays_made_inside_a_scope_use_the_pool_and_others_do_not():
    outside = np.ones(BIG)
    with _pool.scope():
        inside, small = np.ones(BIG), np.ones(3)
        assert get_handler_name() == "optkern_pool"
        with _pool.scope():
            pass
        assert get_handler_name() == "optkern_pool"  # a nested scope restores the outer one
    assert get_handler_name(inside) == get_handler_name(small) == "optkern_pool"
    assert get_handler_name(outside) != "optkern_pool"
    assert get_handler_name() != "optkern_pool"


def test_other_threads_keep_numpys_allocator():
    seen = []
    with _pool.scope():
        t = threading.Thread(target=lambda: seen.append(get_handler_name(np.ones(BIG))))
        t.start()
        t.join()
    assert seen and seen[0] != "optkern_pool"


def test_a_freed_block_is_reused_and_arrays_keep_their_values():
    _pool.release()
    with _pool.scope():
        a = np.arange(BIG, dtype=np.float64)
        del a
        cached = _pool.stats()["cached"]
        assert cached >= BIG * 8
        hits = _pool.stats()["hits"]
        b = np.full(BIG, 7.0)
        assert _pool.stats()["hits"] == hits + 1
        assert _pool.stats()["cached"] == cached - BIG * 8
        np.testing.assert_array_equal(b, 7.0)


def test_zeros_from_a_reused_dirty_block_are_zero():
    with _pool.scope():
        a = np.full(BIG, np.nan)
        del a
        hits = _pool.stats()["hits"]
        z = np.zeros(BIG)
        assert _pool.stats()["hits"] == hits + 1  # the block that held NaN
        assert not z.any()


def test_resize_keeps_the_contents():
    with _pool.scope():
        a = np.arange(BIG, dtype=np.float64)
        a.resize(3 * BIG, refcheck=False)  # NumPy's realloc: grows into a new block
        np.testing.assert_array_equal(a[:BIG], np.arange(BIG))
        assert not a[BIG:].any()
        a.resize(BIG // 2, refcheck=False)
        np.testing.assert_array_equal(a, np.arange(BIG // 2))


def test_arrays_freed_after_the_scope_or_in_another_thread_go_back_to_the_pool():
    _pool.release()
    with _pool.scope():
        a, holder = np.ones(BIG), [np.ones(BIG)]
    del a  # outside the scope
    assert _pool.stats()["cached"] == BIG * 8
    t = threading.Thread(target=holder.clear)  # freed in another thread
    t.start()
    t.join()
    assert _pool.stats()["cached"] == 2 * BIG * 8


def test_the_limit_bounds_what_is_kept(pool_limit):
    _pool.release()
    _pool.set_limit(3 * BIG * 8)
    with _pool.scope():
        arrays = [np.ones(BIG) for _ in range(5)]
    del arrays
    assert _pool.stats()["cached"] == 3 * BIG * 8
    _pool.set_limit(BIG * 8)  # a lower limit frees what is over it
    assert _pool.stats()["cached"] == BIG * 8
    optkern.release_pool()
    assert _pool.stats()["cached"] == 0


def test_limit_zero_leaves_numpys_allocator_in_place(pool_limit):
    optkern.set_pool_limit(0)
    model = MLP([5, 4, 3], dtype=np.float64)
    p = model.init_params(0)
    _, g = model.loss_and_grad(p, np.ones((2, 5)), np.array([0, 1]))
    assert get_handler_name(g) != "optkern_pool"
    stats = _pool.stats()
    assert stats["limit"] == 0 and stats["cached"] == 0


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (1.5, TypeError), ("1", TypeError), (True, TypeError)])
def test_set_pool_limit_refuses_bad_values(bad, exc, pool_limit):
    with pytest.raises(exc, match="nbytes"):
        optkern.set_pool_limit(bad)


def test_info_reports_the_pool():
    info = optkern.info()["pool"]
    assert set(info) == {"limit", "cached", "hits", "misses"}
    assert info["limit"] == _pool.stats()["limit"]


@pytest.mark.parametrize("value", ["abc", "-5", "1e9", " 1"])
def test_a_bad_environment_value_is_refused_at_import(value):
    env = {**os.environ, "OPTKERN_POOL_BYTES": value}
    r = subprocess.run([sys.executable, "-c", "import optkern"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "OPTKERN_POOL_BYTES" in r.stderr


def test_the_environment_sets_the_limit():
    env = {**os.environ, "OPTKERN_POOL_BYTES": "12345"}
    code = "import optkern; print(optkern.info()['pool']['limit'])"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "12345"


def _mlp_problem(dtype):
    model = MLP([96, 160, 10], activation="tanh", norm="layer", dtype=dtype)
    rng = np.random.default_rng(3)
    p = model.init_params(1)
    x, y = rng.standard_normal((257, 96)).astype(dtype), rng.integers(0, 10, 257)
    v = rng.standard_normal(model.num_params).astype(dtype)
    return model, p, x, y, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_products_and_gradients_are_the_same_bits_without_the_pool(dtype, pool_limit):
    model, p, x, y, v = _mlp_problem(dtype)

    def results():
        out = [model.loss_and_grad(p, x, y)[1], model.hvp(p, x, y, v), model.ggn_vp(p, x, y, v)]
        for fixed in (False, True):
            H = hessian.from_mlp(model, p, x, y, fixed=fixed)
            out += [H.matvec(v), H.matvec(2 * v), H.matmat(np.stack([v, -v], axis=1))]
        return out

    pooled = results()
    assert get_handler_name(pooled[0]) == "optkern_pool"
    optkern.set_pool_limit(0)
    plain = results()
    for a, b in zip(pooled, plain):
        np.testing.assert_array_equal(a, b)


def test_repeated_products_reuse_the_pool_without_page_faults():
    model = MLP([784, 256, 10], activation="tanh", dtype=np.float32)
    rng = np.random.default_rng(0)
    p = model.init_params(0)
    x, y = rng.standard_normal((512, 784), np.float32), rng.integers(0, 10, 512)
    v = rng.standard_normal(model.num_params).astype(np.float32)
    G = hessian.from_mlp(model, p, x, y, kind="ggn")
    for _ in range(3):
        G.matvec(v)
    before, faults = _pool.stats(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        G.matvec(v)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    after = _pool.stats()
    assert after["misses"] == before["misses"]  # every temporary of 64 KiB or more came from the pool
    assert after["hits"] - before["hits"] >= 10 * 5
    # NumPy's own allocator page-faulted 934 pages per product here in some process states (3.7 MB
    # of temporaries mapped anew each time); the pool, none after the first products. (Under
    # AddressSanitizer, .ci/sanitize, its own allocator's shadow pages fault: not counted there.)
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        assert faults < 10 * 50
