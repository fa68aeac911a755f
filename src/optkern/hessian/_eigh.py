"""Eigenpairs of the small projected matrices of Lanczos (the tridiagonal ``T``, block Lanczos's ``H``), on
one BLAS thread.

``np.linalg.eigh`` at m = 40-200 runs LAPACK over OpenBLAS's thread pool; when those threads and others
(OpenMP's, another process's) outnumber the cores, each call waits on the pool: 3-45 ms at m = 40-100 on
2 busy cores where one thread takes 0.3-2 ms (bench/eig_check_cost.py), and ``top_eigenvalues`` checks
convergence every few products. These matrices are too small to gain from threads, so the call runs with
the pool set to one thread, through the ``*_set_num_threads`` entry point of the OpenBLAS NumPy loaded
(what threadpoolctl does, without the dependency), restored after. Where no such library is found (MKL,
Accelerate, another OS) NumPy's eigh runs as it is. (A native QL solver, EISPACK's tql2, was tried in its
place: within a cluster of equal-to-rounding Ritz values it returned other eigenvectors than LAPACK's
divide and conquer, whose deflation isolates the converged ones, and the residual estimates of a zero
eigenvalue with many copies stayed 1e2-1e5 larger: +22 % products, 52nd session, h302.)

The setting is the process's, and OpenBLAS's products are bitwise repeatable only at a fixed thread
count: another Python thread's BLAS call in that window would run on one thread and could round
differently. So the pool is pinned only while this is the process's only Python thread (the common
case); with other threads running, NumPy's eigh runs as it is. Each call restores the count it found.
The library is NumPy's own where it can be told (under ``numpy.libs``, or the ILP64 ``64_`` entry
points NumPy's wheels use), not another extension's OpenBLAS that happens to be loaded too.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading

import numpy as np

_NAMES = [
    (f"{p}_get_num_threads{s}", f"{p}_set_num_threads{s}")
    for p in ("scipy_openblas", "openblas")
    for s in ("64_", "_64_", "")
]


@functools.cache
def _pool():
    """``(get, set)`` of the loaded OpenBLAS's thread count, or None where none is found (read once)."""
    try:
        with open("/proc/self/maps") as f:
            found = {ln.split()[-1] for ln in f if "openblas" in ln.lower() and "/" in ln}
    except OSError:
        return None
    # (NumPy's bundled copy first: another extension may load the system OpenBLAS beside it)
    own = os.path.dirname(os.path.dirname(np.__file__)) + os.sep + "numpy.libs" + os.sep
    paths = sorted(found, key=lambda p: (not p.startswith(own), p))
    for path in paths:
        try:
            lib = ctypes.CDLL(path)  # (the loaded copy: dlopen of a loaded library returns it)
        except OSError:
            continue
        for get_name, set_name in _NAMES:
            get, put = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                return get, put
    return None


def eigh(H) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh(H)`` (eigenvalues ascending, eigenvectors as columns) with the BLAS pool at one thread."""
    pool = _pool() if threading.active_count() == 1 else None
    if pool is None:
        return np.linalg.eigh(H)
    was = pool[0]()
    if was <= 1:
        return np.linalg.eigh(H)
    pool[1](1)
    try:
        return np.linalg.eigh(H)
    finally:
        pool[1](was)
