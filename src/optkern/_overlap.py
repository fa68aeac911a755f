"""Which read arrays lie (partly) in the memory of arrays a step writes, by byte spans.

Used where a kernel's aliasing refusal is replaced by the reference's arithmetic (SAM's gradient in
its param's memory, NumPy and torch): the spans come from each API's own arrays, the search is here.
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
