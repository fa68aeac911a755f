"""Host vectors that start on a 64-byte cache line, for the native passes that stream them.

NumPy places an array of 4 MiB and more (malloc's mmap) 16 bytes past a page, so a 32-byte vector
load of it straddles two cache lines every other time, a 64-byte load every time. The L-BFGS push
(11 vector loads per 8 columns, 2k + 3 streams) lost 15-20 points of the read probe to it: a
standalone copy of the kernel read at 79-86 % of the probe on 64-byte-aligned arrays and 63-66 % on
arrays 16 bytes past a line, the module's own figure (bench/RESULTS.md, 51st session). L-BFGS owns
its history rows and vectors, so it allocates them here; the kernels take any aligned array.
"""

from __future__ import annotations

import numpy as np

LINE = 64  # bytes: the cache line, and the widest vector (AVX-512)


def empty(n: int, dtype, xp=np):
    """An uninitialized 1-D array of ``n`` elements of ``dtype`` on ``xp``'s backend; a NumPy one
    starts on a ``LINE``-byte boundary (a view of a slightly larger byte buffer)."""
    if xp is not np:
        return xp.empty(n, dtype=dtype)  # (CuPy's allocations already start on 256-byte boundaries)
    dt = np.dtype(dtype)
    buf = np.empty(n * dt.itemsize + LINE, dtype=np.uint8)
    start = -buf.ctypes.data % LINE
    return buf[start : start + n * dt.itemsize].view(dt)


def copy(a):
    """A copy of the 1-D array ``a`` on its backend; a NumPy one line-aligned, as :func:`empty`'s."""
    if not isinstance(a, np.ndarray):
        return a.copy()
    out = empty(a.size, a.dtype)
    out[...] = a
    return out


def on_line(a):
    """``a`` itself where it is not a NumPy array or already starts on a line; else :func:`copy`'s copy."""
    if not isinstance(a, np.ndarray) or a.ctypes.data % LINE == 0:
        return a
    return copy(a)
