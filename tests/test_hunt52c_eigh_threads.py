"""The projected matrices' eigh on one BLAS thread (``hessian._eigh``): under oversubscription each of
``top_eigenvalues``'s convergence checks waited on OpenBLAS's pool (bench/eig_check_cost.py). The
pool is at one thread during every eigh of the Lanczos paths and restored after (also after an error);
the results are NumPy's eigh's, checked against eigvalsh and the eigen-equation on odd sizes."""

from __future__ import annotations

import ctypes
import sys
import threading

import numpy as np
import pytest
import scipy.sparse.linalg as sla

from optkern.hessian import _eigh, lanczos, spectral_density, top_eigenvalues
from optkern.hessian.lanczos import _tridiag_eigh

EPS = np.finfo(np.float64).eps
POOL = _eigh._pool()
needs_pool = pytest.mark.skipif(POOL is None, reason="no OpenBLAS entry point found: NumPy's eigh runs as it is")


@pytest.fixture
def two_threads(monkeypatch):
    """The pool at two threads (as OPENBLAS_NUM_THREADS unset on this 2-core VM), restored after; this
    the only Python thread as far as ``_eigh`` can tell (another test may have left one running)."""
    monkeypatch.setattr(_eigh.threading, "active_count", lambda: 1)
    was = POOL[0]()
    POOL[1](2)
    yield
    POOL[1](was)


@pytest.mark.parametrize("m", [0, 1, 7, 40, 101])
def test_results_are_eighs(m):
    rng = np.random.default_rng(m)
    B = rng.standard_normal((m, m))
    A = B + B.T
    theta, S = _eigh.eigh(A)
    assert theta.shape == (m,) and S.shape == (m, m)
    if m:
        np.testing.assert_allclose(theta, np.linalg.eigvalsh(A), rtol=0, atol=50 * m * EPS * np.abs(A).max())
        assert np.abs(A @ S - S * theta).max() <= 50 * m * EPS * np.abs(A).max()
        assert np.abs(S.T @ S - np.eye(m)).max() <= 50 * m * EPS


def _numpy_blas() -> str:
    deps = np.show_config(mode="dicts").get("Build Dependencies", {})
    return str(deps.get("blas", {}).get("name", ""))


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and "openblas" in _numpy_blas()), reason="NumPy is not built on OpenBLAS"
)
def test_pool_is_found_on_this_numpy():
    # (a NumPy on OpenBLAS under Linux: the entry point must be found, and be NumPy's own library,
    # or the fix is a no-op)
    assert POOL is not None and POOL[0]() >= 1
    with open("/proc/self/maps") as f:
        own = [ln.split()[-1] for ln in f if "numpy.libs" in ln and "openblas" in ln.lower()]
    if own:  # (a wheel's bundled copy: the pool found must be that library's)
        lib = ctypes.CDLL(own[0])
        get = next(getattr(lib, g) for g, _ in _eigh._NAMES if hasattr(lib, g))
        get.restype = ctypes.c_int
        was = POOL[0]()
        POOL[1](1)
        try:
            assert get() == 1
        finally:
            POOL[1](was)


@needs_pool
def test_pool_left_alone_while_other_threads_run(monkeypatch):
    """Another Python thread's BLAS products would round differently on one thread: with one running
    the pool is not touched."""
    seen = []
    real = np.linalg.eigh

    def spy(H):
        seen.append(POOL[0]())
        return real(H)

    was = POOL[0]()
    POOL[1](2)
    try:
        monkeypatch.setattr(np.linalg, "eigh", spy)
        stop = threading.Event()
        t = threading.Thread(target=stop.wait)
        t.start()
        try:
            _eigh.eigh(np.eye(20))
        finally:
            stop.set()
            t.join()
        assert seen == [2]
    finally:
        POOL[1](was)


@needs_pool
def test_one_thread_inside_restored_after(monkeypatch, two_threads):
    seen = []
    real = np.linalg.eigh

    def spy(H):
        seen.append(POOL[0]())
        return real(H)

    monkeypatch.setattr(np.linalg, "eigh", spy)
    _eigh.eigh(np.eye(50))
    assert seen == [1] and POOL[0]() == 2
    with pytest.raises(np.linalg.LinAlgError):  # (an error inside restores the count too)
        _eigh.eigh(np.ones((3, 4)))
    assert POOL[0]() == 2


@needs_pool
def test_lanczos_paths_run_eigh_on_one_thread(monkeypatch, two_threads):
    """top_eigenvalues (restarted, blocks, each ``which``), lanczos' Ritz pairs and SLQ: every eigh they make
    runs with the pool at one thread, and the answers are eigvalsh's."""
    seen = []
    real = np.linalg.eigh

    def spy(H):
        seen.append(POOL[0]())
        return real(H)

    rng = np.random.default_rng(5)
    n = 301
    Qo = np.linalg.qr(rng.standard_normal((n, n)))[0]
    d = np.concatenate([[3.0, 3.0, 2.9], rng.uniform(-2.5, 2.5, n - 3)])
    A = (Qo * d) @ Qo.T
    A = (A + A.T) / 2
    ref = np.linalg.eigvalsh(A)
    monkeypatch.setattr(np.linalg, "eigh", spy)
    for which, want in (("LA", ref[::-1][:4]), ("SA", ref[:4]), ("LM", ref[np.argsort(-np.abs(ref))][:4])):
        for b, p in ((1, 20), (3, 24)):
            r = top_eigenvalues(A, k=4, which=which, block_size=b, max_basis=p, max_steps=20000)
            assert r.converged
            np.testing.assert_allclose(r.eigenvalues, want, rtol=1e-9, atol=1e-9)
    theta, U = lanczos(A, 60, return_ritz=True)[-2:]
    assert abs(theta[-1] - ref[-1]) < 1e-8
    spectral_density(sla.aslinearoperator(A), num_probes=2, steps=20)
    assert len(seen) > 20 and set(seen) == {1}
    assert POOL[0]() == 2


def test_tridiagonal_against_numpy():
    rng = np.random.default_rng(3)
    for m in (1, 7, 64, 151):
        a, b = rng.uniform(-1, 1, m), rng.uniform(0.01, 1, m - 1)
        theta, S = _tridiag_eigh(a, b)
        T = np.diag(a) + np.diag(b, 1) + np.diag(b, -1)
        np.testing.assert_allclose(theta, np.linalg.eigvalsh(T), rtol=0, atol=50 * m * EPS * 2)
        assert np.abs(T @ S - S * theta).max() <= 50 * m * EPS * 2
