"""Host vectors that start on a 64-byte cache line, for the native passes that stream them.

NumPy places an array of 4 MiB and more (malloc's mmap) 16 bytes past a page, so a 32-byte vector
load of it straddles two cache lines every other time, a 64-byte load every time. The L-BFGS push
(11 vector loads per 8 columns, 2k + 3 streams) lost 15-20 points of the read probe to it: a
standalone copy of the kernel read at 79-86 % of the probe on 64-byte-aligned arrays and 63-66 % on
arrays 16 bytes past a line, the module's own figure (bench/RESULTS.md, 51st session). L-BFGS owns
its history rows and vectors, so it allocates them here; the kernels take any aligned array.

Large arrays are also staggered across the first half of a 4 KiB page (:func:`page_offset`): each
one of 4 MiB and more is its own mmap, page-aligned, so every row of a history started at the same
offset mod 4 KiB. Spread 5 lines apart, the push ran 7-12 % faster and the step 2-8 % (16M elements,
history 10 / 30; 4M, history 100), while the direction runs 1-5 % slower at 16M -- known, not
explained (not 4K aliasing with its accumulator): bench/RESULTS.md, 52nd session h309, 53rd h311.
"""

from __future__ import annotations

import itertools

import numpy as np

LINE = 64  # bytes: the cache line, and the widest vector (AVX-512)
PAGE = 4096  # bytes: a page; arrays of 4 MiB and more (their own mmaps) start at one offset in it
STAGGER_FROM = 1 << 20  # bytes: smaller arrays sit in a cache anyway; not worth a page more each
# Line offsets the staggered arrays take: the first half of a page, the span measured (h311: 8, 32
# and 64 lines past a page start; 32 gained the most on the step)
_SLOTS = PAGE // 2 // LINE
_STEP = 5  # lines from one staggered array to the next (coprime to _SLOTS: every slot in turn)
_slot = itertools.count()


def page_offset() -> int:
    """The offset past a page for the next staggered array: successive ones ``_STEP`` lines apart
    in ``[0, PAGE / 2)``, so that the rows of one history (allocated one after another) take
    distinct offsets."""
    return next(_slot) * _STEP % _SLOTS * LINE


def empty(n: int, dtype, xp=np):
    """An uninitialized 1-D array of ``n`` elements of ``dtype`` on ``xp``'s backend; a NumPy one
    starts on a ``LINE``-byte boundary (a view of a slightly larger byte buffer), one of
    ``STAGGER_FROM`` bytes or more at :func:`page_offset` past a page."""
    if xp is not np:
        return xp.empty(n, dtype=dtype)  # (CuPy's allocations already start on 256-byte boundaries)
    dt = np.dtype(dtype)
    size = n * dt.itemsize
    big = size >= STAGGER_FROM
    buf = np.empty(size + (PAGE if big else LINE), dtype=np.uint8)
    start = (page_offset() - buf.ctypes.data) % PAGE if big else -buf.ctypes.data % LINE
    return buf[start : start + size].view(dt)


def copy(a):
    """A copy of the 1-D array ``a`` on its backend; a NumPy one line-aligned, as :func:`empty`'s."""
    if not isinstance(a, np.ndarray):
        return a.copy()
    out = empty(a.size, a.dtype)
    out[...] = a
    return out


def placed(a) -> bool:
    """Whether the NumPy array ``a`` sits where :func:`empty` puts one of its size: on a line, and in
    the first half of a page when it has ``STAGGER_FROM`` bytes or more."""
    at = a.ctypes.data
    return at % LINE == 0 and (a.nbytes < STAGGER_FROM or at % PAGE < PAGE // 2)


def on_line(a):
    """``a`` itself where it is not a NumPy array or is already :func:`placed`; else :func:`copy`'s
    copy (an unpickled or deep-copied optimizer's rows: NumPy's, 16 bytes past a page when large)."""
    if not isinstance(a, np.ndarray) or placed(a):
        return a
    return copy(a)
