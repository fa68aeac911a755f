"""``clip_grad_norm_(shard, ..., comm=)`` on a :class:`ShardedOptimizer`'s slice, bit for bit the
unsharded clip of the whole gradient.

The one process's norm sums its terms chunk by chunk, each param cut into the native kernel's
chunks from its first element (``grad_norm_chunk``: 65536 elements on the CPU, 32768 on the GPU;
each chunk in fixed lanes) and ends those partial sums in order. A rank's slice is cut elsewhere:
one array per group (a slice through several params) and a rank boundary inside a param, so the
ranks' partial sums were of other chunks, and the norm (hence the clipping factor, the step, the
params) an ulp or more off the unsharded one (p = 2, 2 ranks, normal gradients). ``synchronize``
now returns a :class:`ShardGrads`: the same arrays, knowing where they lie among the params. Its
norm takes each rank's chunks of the params, a chunk cut by a rank boundary put together on the
rank holding its first element (the ranks' edges exchanged: one allgather of at most two chunks
a rank), and the ranks' partial sums, gathered in rank order, end as the one process's.
"""

from __future__ import annotations

import bisect
import zlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ShardLayout:
    """Where a rank's shard arrays lie: ``pieces`` (each array's flat range, in order), the params'
    ``(offset, size)`` in the flat buffer, every rank's ``bounds`` (its slice's flat range)."""

    rank: int
    pieces: tuple
    params: tuple
    bounds: tuple

    def signature(self) -> int:
        """A small int equal on the ranks of one ShardedOptimizer (the layout every rank assumes)."""
        return zlib.crc32(repr((self.params, self.bounds)).encode()) & 0x7FFFFFFF


class ShardGrads(list):
    """``ShardedOptimizer.synchronize``'s list of this rank's gradient slices; ``layout`` tells
    ``clip_grad_norm_(..., comm=)`` how they lie among the params (a plain list of the same arrays
    gives the norm of the ranks' arrays as they are cut: an ulp or more off the unsharded one)."""

    __slots__ = ("layout",)

    def __init__(self, arrays, layout: ShardLayout) -> None:
        super().__init__(arrays)
        self.layout = layout


def layout_of(z) -> ShardLayout:
    """The layout of ``z``'s (a ShardedOptimizer's) current shard."""
    params = tuple((int(o), int(p.size)) for o, p in zip(z._offs, z._user))
    span = max((o + n for o, n in params), default=0)
    bounds = []
    for r in range(z.world):
        lo = min(r * z.chunk, span)
        bounds.append((lo, min(lo + z.chunk, span)))
    pieces = tuple((int(a), int(b)) for cuts in z._pieces for a, b in cuts)
    return ShardLayout(z.rank, pieces, params, tuple(bounds))


def _chunk_at(lay: ShardLayout, x: int, k: int):
    """The flat range of the chunk holding flat element ``x``, or None (a gap, the padding)."""
    i = bisect.bisect_right([o for o, _ in lay.params], x) - 1
    while i >= 0 and lay.params[i][1] == 0:  # (an empty param shares its offset with the next)
        i -= 1
    if i < 0:
        return None
    o, n = lay.params[i]
    if not o <= x < o + n:
        return None
    s = o + (x - o) // k * k
    return s, min(s + k, o + n)


def _edges(lay: ShardLayout, r: int, k: int) -> list:
    """Rank ``r``'s elements in chunks that a rank boundary cuts: the head ``[lo, end)`` of a chunk
    begun on an earlier rank and the tail ``[start, hi)`` of one that a later rank ends (one range
    where a chunk holds the whole slice)."""
    lo, hi = lay.bounds[r]
    if hi <= lo:
        return []
    out = []
    head = _chunk_at(lay, lo, k)
    if head is not None and head[0] < lo:
        out.append((lo, min(head[1], hi)))
    tail = _chunk_at(lay, hi - 1, k)
    if tail is not None and tail[1] > hi and not (out and tail[0] < lo):
        out.append((max(tail[0], lo), hi))
    return out


def _take(lay: ShardLayout, grads: list, a: int, b: int):
    """Flat elements ``[a, b)`` of this rank's slice (inside one of its arrays: a chunk lies in one
    param, a param in one group, and the arrays are the groups' or the params' pieces)."""
    for (pa, pb), g in zip(lay.pieces, grads):
        if pa <= a and b <= pb:
            return g.reshape(-1)[a - pa : b - pa]
    raise AssertionError(f"flat range [{a}, {b}) not in this rank's arrays")  # (not reachable)


def owned_chunks(lay: ShardLayout, comm, xp, grads: list, k: int) -> list:
    """This rank's chunks of the params (those whose first element it holds), in flat order, each
    one array (a view, or a cut chunk put together from the ranks' edges). Collective: one
    allgather of every rank's edges (its lengths known to every rank from the layout)."""
    mine = _edges(lay, lay.rank, k)
    width = max(sum(b - a for a, b in _edges(lay, r, k)) for r in range(len(lay.bounds)))
    dtype = grads[0].dtype if grads else np.float32
    send = xp.zeros(width, dtype=dtype)
    at = 0
    for a, b in mine:
        send[at : at + b - a] = _take(lay, grads, a, b)
        at += b - a
    every = comm.allgather(send, check=False) if width else send
    lo, hi = lay.bounds[lay.rank]
    out = []
    for o, n in lay.params:
        if n == 0 or o + n <= lo:
            continue
        if o >= hi:
            break
        # (the param's chunks that begin on this rank; one begun on an earlier rank is that rank's)
        for s in range(o + -(-(max(lo, o) - o) // k) * k, min(hi, o + n), k):
            e = min(s + k, o + n)
            if e <= hi:
                out.append(_take(lay, grads, s, e))
                continue
            pieces = [_take(lay, grads, s, hi)]  # (ended by the next ranks: their heads after it)
            for r in range(lay.rank + 1, len(lay.bounds)):
                rlo, rhi = lay.bounds[r]
                if rlo >= e:
                    break
                if rhi > rlo:
                    pieces.append(every[r * width : r * width + min(e, rhi) - rlo])
            out.append(xp.concatenate(pieces))
    return out
