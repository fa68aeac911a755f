"""Which read arrays lie (partly) in the memory of arrays a step writes, by byte spans.

Used where a kernel's aliasing refusal is replaced by the reference's arithmetic (SAM's gradient in
its param's memory, NumPy and torch): the spans come from each API's own arrays (``byte_span`` for
NumPy / CuPy, :func:`tensor_span` for torch), the search is here. Spans are bounds: strided arrays
whose spans meet may still share no element (``a[::2]`` and ``a[1::2]``), which :func:`shares`
decides for NumPy arrays (``np.shares_memory``, bounded); others stay conservative. :func:`shares` is
the one pairwise test of the package (norm's running-buffer checks, ``_array_checks.sharing_pairs``
and :func:`exact_for_numpy` use it).
"""

from __future__ import annotations

import numpy as np

from ._array_checks import is_cupy


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


def too_hard_error(numpy_module) -> type[Exception]:
    """NumPy's TooHardError: in ``numpy.exceptions`` from NumPy 1.25, at the top level before (pyproject
    allows 1.22; NumPy 2 keeps it in ``numpy.exceptions`` only)."""
    return getattr(numpy_module, "exceptions", numpy_module).TooHardError


_TOO_HARD = too_hard_error(np)
SHARES_MAX_WORK = 1 << 16  # np.shares_memory's work bound (1-D strided pairs take a handful of steps)


def shares(a, b) -> bool:
    """Whether arrays ``a`` and ``b`` may share an element, never False when they do. Two NumPy
    arrays: their byte bounds first (``may_share_memory``, in C), then ``np.shares_memory`` bounded
    by :data:`SHARES_MAX_WORK` -- interleaved views (``a[::2]`` and ``a[1::2]``, the columns of a
    (C, 2) array) share none; a problem past the bound counts as shared. Two CuPy arrays: their byte
    bounds only (CuPy's exact test lists every element's address on the device and synchronizes):
    exact for contiguous arrays, conservative for strided ones. A NumPy and a CuPy array: False
    (host and device memory). Anything else (a torch tensor): True, the conservative answer for a
    caller whose spans already met."""
    a_np, b_np = isinstance(a, np.ndarray), isinstance(b, np.ndarray)
    a_cp, b_cp = is_cupy(a), is_cupy(b)
    if (a_np and b_cp) or (a_cp and b_np):
        return False
    if a_cp and b_cp:
        import cupy

        return bool(cupy.may_share_memory(a, b))
    if not (a_np and b_np):
        return True
    if not np.may_share_memory(a, b):
        return False
    try:
        # (NumPy's stub lists max_work -1 and 0 only; the function takes any bound)
        return bool(np.shares_memory(a, b, max_work=SHARES_MAX_WORK))  # type: ignore[arg-type]
    except _TOO_HARD:
        return True


def exact_for_numpy(found: list, read: list, written: list) -> list:
    """The indices ``i`` of ``found`` (read arrays whose spans meet a written one's) that may share
    memory with one of ``written`` by :func:`shares` (exact for NumPy pairs up to its bound; any
    other pair kept, as its span said)."""
    return [i for i in found if any(w.size and shares(read[i], w) for w in written)]
