"""Thread limits for the study.

The study's arrays are small (a 64-128 wide MLP, batches of 64-512 rows), so
each kernel or BLAS call lasts micro- to milliseconds. Two thread pools in
one process, optkern's OpenMP team and OpenBLAS's pthreads, then fight over
the cores: OpenMP workers spin-wait after each region and starve the BLAS
threads, and on a busy machine every parallel call waits for its slowest,
descheduled thread. Measured on a shared 2-core machine: an MLP
Hessian-vector product took 8 ms with one thread of each and 35-330 ms with
the defaults. One thread is fastest for these sizes and makes the timings
steady, so the study runs with ``--threads 1`` unless told otherwise.
"""
from __future__ import annotations

import contextlib
import ctypes

# (getter, setter) names across OpenBLAS builds: plain, 64-bit-integer and the NumPy / SciPy wheels' copies.
_OPENBLAS_SYMBOLS = (
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
)


def _loaded_openblas() -> list:
    """(get, set) function pairs of every OpenBLAS library loaded in this process."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and ln.split()[-1].startswith("/")})
    except OSError:  # not Linux: leave BLAS alone
        return []
    pairs = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _OPENBLAS_SYMBOLS:
            get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is not None and set_ is not None:
                pairs.append((get, set_))
                break
    return pairs


@contextlib.contextmanager
def limit_threads(n: int):
    """Run the block with ``n`` optkern OpenMP threads and ``n`` OpenBLAS threads,
    restoring the previous counts afterwards (best effort: a BLAS that is not
    OpenBLAS keeps its own setting)."""
    from .. import _cpu as cpu  # noqa: PLC0415

    old_omp = cpu.get_num_threads() if hasattr(cpu, "get_num_threads") else None
    blas = _loaded_openblas()
    old_blas = [int(get()) for get, _ in blas]
    try:
        if old_omp is not None:
            cpu.set_num_threads(int(n))
        for _, set_ in blas:
            set_(int(n))
        yield
    finally:
        if old_omp is not None:
            cpu.set_num_threads(old_omp)
        for (_, set_), k in zip(blas, old_blas):
            set_(k)
