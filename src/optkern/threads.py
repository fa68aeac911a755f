"""Thread counts of optkern's OpenMP kernels and of NumPy's OpenBLAS.

Small arrays (an MLP 64-512 wide, batches of a few hundred rows) make each
kernel or BLAS call last micro- to milliseconds. Two thread pools in one
process, optkern's OpenMP team and OpenBLAS's pthreads, then compete for the
cores, and on a busy machine every parallel call waits for its slowest,
descheduled thread. optkern's workers sleep between regions by default (see
``_backend``), which removes most of the cost; ``limit_threads(1)`` removes
the rest and makes timings steady (the study runs that way). Large optimizer
steps and normalizations want all threads.
"""

from __future__ import annotations

import contextlib
import ctypes

#: The most threads ``set_num_threads`` / ``limit_threads`` take (the study's ``--threads`` bound
#: too). OpenMP accepts any count but creates the team only at the next parallel region, and a
#: count it cannot create ends the process there (a segfault, not an error): with Linux's default
#: vm.max_map_count (65530; two maps per thread stack) 65536 threads crash, 16384 ran here. 4096
#: stays well inside those limits (8 MiB default stacks: 32 GiB of address space, ~8k maps) and
#: above the logical CPU count of any one host today, so no useful setting is refused. A fixed
#: bound, not one from ``os.cpu_count()``: a script valid on one machine stays valid on another.
MAX_THREADS = 4096

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


def get_num_threads() -> int:
    """OpenMP threads optkern's CPU kernels use."""
    from . import _cpu

    return int(_cpu.get_num_threads())


def set_num_threads(n: int) -> None:
    """Use ``n`` OpenMP threads (1 to ``MAX_THREADS``) in optkern's CPU kernels (like ``torch.set_num_threads``)."""
    from . import _cpu

    _cpu.set_num_threads(_count(n))


def _count(n) -> int:
    """``n`` checked as a thread count: an integer in [1, MAX_THREADS] (TypeError / ValueError naming ``n``)."""
    from . import _backend

    return _backend.integer("n", n, 1, MAX_THREADS)


@contextlib.contextmanager
def limit_threads(n: int):
    """Run the block with ``n`` optkern OpenMP threads and ``n`` OpenBLAS threads,
    restoring the previous counts afterwards (best effort: a BLAS that is not
    OpenBLAS keeps its own setting)."""
    from . import _cpu as cpu

    n = _count(n)  # (before anything changes)
    old_omp = cpu.get_num_threads()
    blas = _loaded_openblas()
    old_blas = [int(get()) for get, _ in blas]
    try:
        cpu.set_num_threads(n)
        for _, set_ in blas:
            set_(n)
        yield
    finally:
        cpu.set_num_threads(old_omp)
        for (_, set_), k in zip(blas, old_blas):
            set_(k)
