"""Which read arrays lie (partly) in the memory of arrays a step writes, by byte spans.

Used where a kernel's aliasing refusal is replaced by the reference's arithmetic (SAM's gradient in
its param's memory, NumPy and torch): the spans come from each API's own arrays (``byte_span`` for
NumPy / CuPy, :func:`tensor_span` for torch), the search is here. Spans are bounds: strided arrays
whose spans meet may still share no element (``a[::2]`` and ``a[1::2]``), which
:func:`exact_for_numpy` decides for NumPy arrays (``np.shares_memory``); others stay conservative.
"""

from __future__ import annotations

import numpy as np


def in_spans(lo, hi, glo, ghi) -> np.ndarray:
    """The indices ``j`` of the read spans ``[glo[j], ghi[j])`` that overlap some written span
    ``[lo[i], hi[i])`` (int64 arrays; empty spans overlap nothing): the written spans sorted, each
    read span's end looked up in them (vectorized: ~0.6 us an array, where a loop over spans in
    Python cost ~1.5)."""
    keep = hi > lo
    order = np.argsort(lo[keep], kind="stable")
    starts, reach = lo[keep][order], np.maximum.accumulate(hi[keep][order])  # reach: furthest end so far
    k = np.searchsorted(starts, ghi)  # the written spans starting below each read span's end
    hit = (k > 0) & (ghi > glo)
    hit[hit] = reach[k[hit] - 1] > glo[hit]
    return np.flatnonzero(hit)


def tensor_span(t) -> tuple[int, int]:
    """(first byte, one past the last byte) of the memory a torch tensor's elements lie in, any
    strides (``data_ptr() + nbytes`` is that only for a dense tensor: ``base[::2]`` reaches twice as
    far); ``(ptr, ptr)`` when it is empty. A bound, as ``_array_checks.byte_span`` is for NumPy."""
    ptr = int(t.data_ptr())
    if t.numel() == 0:
        return ptr, ptr
    item = t.element_size()
    lo, hi = ptr, ptr + item
    for n, stride in zip(t.shape, t.stride()):
        if stride < 0:
            lo += (n - 1) * stride * item
        else:
            hi += (n - 1) * stride * item
    return lo, hi


def exact_for_numpy(found: list, read: list, written: list) -> list:
    """The indices ``i`` of ``found`` (read arrays whose spans meet a written one's) that do share
    memory with one of ``written``: a NumPy ``read[i]`` is kept only where ``np.shares_memory``
    finds an element in common with a NumPy written array, or where a written array is not NumPy
    (kept, as its span said); any other read array is kept (the span's bound, conservative)."""
    keep = []
    for i in found:
        r = read[i]
        if isinstance(r, np.ndarray) and all(isinstance(w, np.ndarray) for w in written):
            if not any(w.size and np.shares_memory(r, w) for w in written):
                continue
        keep.append(i)
    return keep
