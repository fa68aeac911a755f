"""glibc's allocator thresholds pinned for the processes optkern's command line owns.

glibc serves a ``malloc`` above ``M_MMAP_THRESHOLD`` (128 KiB at start) with a fresh ``mmap``
and gives it back with ``munmap`` on ``free``: every such array is page-faulted (and zeroed
by the kernel) again on its next use. glibc raises the threshold by itself when a large
mapped block is freed (up to 32 MiB, with the heap's trim threshold at twice that), so a
process's speed depends on its allocation history: the MLP's Hessian-vector product took
113 ms in a fresh process and 77 ms once anything had freed a 24 MiB array (measured on the
benchmark VM, 784-512-512-10, batch 1024). ``optkern study`` and ``optkern bench`` pin the
state glibc would reach anyway (threshold 32 MiB, trim 64 MiB) at start, for every case
alike, so timings do not depend on which case ran first. The library itself never changes
the process's allocator by itself: an application may call ``optkern.pin_glibc_thresholds()``.
(The MLP's and curvature operators' own temporaries come from optkern's pool, ``_pool.py``,
whatever glibc's state.)
"""

from __future__ import annotations

import ctypes
import mmap
import sys

import numpy as np

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc's dynamic rule sets beside it


def pin_glibc_thresholds() -> bool:
    """Set ``M_MMAP_THRESHOLD`` = 32 MiB and ``M_TRIM_THRESHOLD`` = 64 MiB; False (nothing done)
    where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")  # (find_library would run ldconfig in a subprocess)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc only (musl has no mallopt thresholds)
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return bool(ok and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)


# ---- large work arrays faulted in at once ---------------------------------------------------

MADV_POPULATE_WRITE = 23  # Linux 5.14+: fault a range in, writable, in one call
POPULATE_MIN_BYTES = 4 << 20  # NumPy's own huge-page threshold: smaller arrays are heap-recycled
_madvise = None


def _libc_madvise():
    global _madvise
    if _madvise is None:
        _madvise = False
        if sys.platform.startswith("linux"):
            try:
                f = ctypes.CDLL("libc.so.6", use_errno=True).madvise
                f.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                f.restype = ctypes.c_int
                _madvise = f
            except (OSError, AttributeError):
                pass
    return _madvise


def populate(a):
    """Fault in the pages of ``a`` (a large host NumPy array about to be filled) in one kernel call,
    ``madvise(MADV_POPULATE_WRITE)``; returns ``a``. Other arrays, and kernels without the call
    (before Linux 5.14), are left to fault on first touch.

    Why: a fresh large array (glibc maps it anew, NumPy asks for transparent huge pages) is
    faulted in by its first writes, which on the benchmark VM cost 4.8 ms per 2.7 MB row of a
    Lanczos basis (demand faults of huge pages; 2.7 ms with 4 KiB pages) where the one call costs
    0.47 ms per row: 457 ms against 82 ms for an 81-row basis of 670k float32."""
    if not (isinstance(a, np.ndarray) and a.nbytes >= POPULATE_MIN_BYTES and a.flags.writeable):
        return a
    madvise = _libc_madvise()
    if madvise:
        start = a.ctypes.data & ~(mmap.PAGESIZE - 1)
        madvise(start, a.ctypes.data + a.nbytes - start, MADV_POPULATE_WRITE)  # failure: faults later
    return a
