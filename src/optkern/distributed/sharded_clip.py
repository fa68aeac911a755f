"""``clip_grad_norm_(shard, ..., comm=)`` on a :class:`ShardedOptimizer`'s slice, bit for bit the
unsharded clip of the whole gradient.

The one process's norm sums its terms chunk by chunk, each param cut into the native kernel's
chunks from its first element (``grad_norm_chunk``: 65536 elements on the CPU, 32768 on the GPU;
each chunk in fixed lanes) and ends those partial sums in order. A rank's slice is cut elsewhere:
one array per group (a slice through several params) and a rank boundary inside a param, so the
ranks' partial sums were of other chunks, and the norm (hence the clipping factor, the step, the
params) an ulp or more off the unsharded one (p = 2, 2 ranks, normal gradients). ``synchronize``
now returns a :class:`ShardGrads`: the same arrays, knowing where they lie among the params. Its
norm takes each rank's chunks of the params and ends every rank's partial sums, in rank order, as
the one process ends its own. A chunk cut by a rank boundary is put together from the ranks' edges
(its elements on each rank) and summed by every rank alike. One allgather carries each rank's
partial sums and its edges, their lengths known to every rank from the layout (an allgather of
the edges, an allreduce of the counts and an allgather of the parts before: a ZeRO step with
clipping at p = 2 made 8 collectives, now 6).
"""

from __future__ import annotations

import bisect
import functools
import zlib
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ShardLayout:
    """Where a rank's shard arrays lie: ``pieces`` (each array's flat range, in order), the params'
    ``(offset, size)`` in the flat buffer, every rank's ``bounds`` (its slice's flat range)."""

    rank: int
    pieces: tuple
    params: tuple
    bounds: tuple
    #: the params' offsets, for :func:`_chunk_at`'s bisection (made once, not per look-up)
    offsets: tuple = field(init=False, repr=False, compare=False)
    #: the hash and :meth:`signature`, made once: a layout is looked up in :func:`_plan`'s cache and
    #: compared between ranks at every clip (each a pass over every param: ~1 ms a step at 1000)
    _hash: int = field(init=False, repr=False, compare=False)
    _signature: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "offsets", tuple(o for o, _ in self.params))
        object.__setattr__(self, "_hash", hash((self.rank, self.pieces, self.params, self.bounds)))
        sig = zlib.crc32(repr((self.params, self.bounds)).encode()) & 0x7FFFFFFF
        object.__setattr__(self, "_signature", sig)

    def __hash__(self) -> int:
        return self._hash

    def signature(self) -> int:
        """A small int equal on the ranks of one ShardedOptimizer (the layout every rank assumes)."""
        return self._signature


class ShardGrads(list):
    """``ShardedOptimizer.synchronize``'s list of this rank's gradient slices; ``layout`` tells
    ``clip_grad_norm_(..., comm=)`` how they lie among the params (a plain list of the same arrays
    gives the norm of the ranks' arrays as they are cut: an ulp or more off the unsharded one)."""

    __slots__ = ("layout",)

    def __init__(self, arrays, layout: ShardLayout) -> None:
        super().__init__(arrays)
        self.layout = layout


def shard_layout(grads, comm) -> ShardLayout | None:
    """The layout of ``grads`` where they are a ShardedOptimizer's ``synchronize`` list for ``comm``
    (``clip_grad_norm_(grads, comm=comm)`` is then the unsharded clip, bit for bit), else None."""
    if not isinstance(grads, ShardGrads):
        return None
    if comm.size != len(grads.layout.bounds) or comm.rank != grads.layout.rank:
        return None  # (another communicator than the optimizer's: the norm of its ranks' arrays)
    # (its arrays as synchronize returned them: one a piece of the layout, of its size; a list
    # changed since is clipped as the plain list of its arrays)
    sizes = [b - a for a, b in grads.layout.pieces] or [0]
    if len(grads) != len(sizes) or any(getattr(g, "size", -1) != n for g, n in zip(grads, sizes)):
        return None
    return grads.layout


def layout_of(z) -> ShardLayout:
    """The layout of ``z``'s (a ShardedOptimizer's) current shard: made once per layout and kept
    with what it is made of (every ``synchronize`` asks; made anew it was a pass over every param).
    The flat offsets' and pieces' lists are made anew whenever the layout is (a group added, a
    checkpoint resharded), never changed in place; the params' sizes cannot change (the step's
    ``check_layouts`` refuses a resized param before ``synchronize`` returns)."""
    held = getattr(z, "_shard_layout", None)
    key = (z.chunk, z.world, z.rank)
    if held is not None and held[0] is z._offs and held[1] is z._pieces and held[2] == key:
        return held[3]
    lay = _layout_of(z)
    z._shard_layout = (z._offs, z._pieces, key, lay)
    return lay


def _layout_of(z) -> ShardLayout:
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
    i = bisect.bisect_right(lay.offsets, x) - 1
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


def _where(lay: ShardLayout, ranges) -> tuple:
    """Where flat ranges ``[a, b)`` of this rank's slice lie among its arrays: ``(array, start, end)``
    each (inside one array: a chunk lies in one param, a param in one group, and the arrays are the
    groups' or the params' pieces). One forward walk: the ranges and the pieces are both in flat
    order (a scan of every piece per range was quadratic in the params)."""
    out, j = [], 0
    for a, b in ranges:
        while j < len(lay.pieces) and lay.pieces[j][1] < b:
            j += 1
        if not (j < len(lay.pieces) and lay.pieces[j][0] <= a):
            raise AssertionError(f"flat range [{a}, {b}) not in this rank's arrays")  # (not reachable)
        pa = lay.pieces[j][0]
        out.append((j, a - pa, b - pa))
    return tuple(out)


def _starts(lay: ShardLayout, r: int, k: int) -> tuple[list, tuple | None]:
    """Rank ``r``'s chunks of the params (those whose first element it holds), in flat order: the
    ones inside its slice and the one a later rank ends (None: no such chunk; it is the last one)."""
    lo, hi = lay.bounds[r]
    inside: list = []
    for o, n in lay.params:
        if n == 0 or o + n <= lo:
            continue
        if o >= hi:
            break
        # (the param's chunks that begin on this rank; one begun on an earlier rank is that rank's)
        for s in range(o + -(-(max(lo, o) - o) // k) * k, min(hi, o + n), k):
            e = min(s + k, o + n)
            if e > hi:
                return inside, (s, e)
            inside.append((s, e))
    return inside, None


@dataclass(frozen=True)
class _Plan:
    """What :func:`every_part` and :func:`inside_chunks` read from the layout alone: every rank's
    chunks (:func:`_starts`) and edges (:func:`_edges`), the gathered row's ``width`` in float64
    words, where each cut chunk's pieces lie (``cuts``: per cut chunk, ``(rank, a, b)``) and where this
    rank's inside chunks and edges lie among its arrays (``inside``, ``mine``: :func:`_where`)."""

    plans: tuple
    edges: tuple
    inside: tuple
    mine: tuple
    lens: tuple
    per_word: int
    width: int
    cuts: tuple


@functools.lru_cache(maxsize=16)
def _plan(lay: ShardLayout, k: int, itemsize: int) -> _Plan:
    """The clip's plan for ``lay``, chunks of ``k`` elements and gradients of ``itemsize`` bytes,
    made once per layout: the ranks' chunks and edges were listed again on every step (a Python
    walk over every param for every rank, ~1 ms a step at 200 params and ~50 ms at 1000 on 2
    ranks, see bench/zero_clip.py). Keyed by the layout's value (its params' offsets and sizes,
    every rank's bounds, this rank's pieces), the chunk and the dtype's size: a changed layout (a
    param reshaped or added, another dtype) is another key, never a stale plan."""
    world = len(lay.bounds)
    plans = tuple(_starts(lay, r, k) for r in range(world))
    edges = tuple(tuple(_edges(lay, r, k)) for r in range(world))
    per_word = 8 // itemsize  # (float32 edges: two in a float64 word, bits moved as they are)
    lens = tuple(sum(b - a for a, b in e) for e in edges)
    width = max(len(inside) + -(-n // per_word) for (inside, _), n in zip(plans, lens))
    cuts = []
    for _, chunk in plans:
        if chunk is not None:
            s, e = chunk
            cuts.append(
                tuple((q, max(s, lo), min(e, hi)) for q, (lo, hi) in enumerate(lay.bounds) if max(s, lo) < min(e, hi))
            )
    inside, mine = _where(lay, plans[lay.rank][0]), _where(lay, edges[lay.rank])
    return _Plan(plans, edges, inside, mine, lens, per_word, width, tuple(cuts))


def inside_chunks(lay: ShardLayout, grads: list, k: int) -> list:
    """This rank's chunks of the params inside its slice, in flat order: views of ``grads``."""
    itemsize = np.dtype(grads[0].dtype if grads else np.float64).itemsize
    return [grads[i].reshape(-1)[a:b] for i, a, b in _plan(lay, k, itemsize).inside]


def every_part(lay: ShardLayout, comm, xp, grads: list, k: int, parts_of, parts=None):
    """Every rank's partial sums of its chunks of the params, in rank order: the one process's
    parts of every param's chunks, in flat order. ``parts_of(chunks)``: the float64 partial sums
    of a list of chunks (one each); ``parts``: those of this rank's :func:`inside_chunks`
    (None: taken here). Collective: one allgather, of every rank's parts and its edges (the raw
    elements of the chunks a rank boundary cuts); every rank then puts each cut chunk together
    and sums it itself. The lengths are known to every rank from the layout: the parts' counts
    were gathered in an allreduce, and the edges in an allgather of their own before the parts
    (three collectives, now one)."""
    world = len(lay.bounds)
    dtype = np.dtype(grads[0].dtype if grads else np.float64)
    plan = _plan(lay, k, dtype.itemsize)
    plans, edges, lens, per_word, width = plan.plans, plan.edges, plan.lens, plan.per_word, plan.width
    if parts is None:
        chunks = inside_chunks(lay, grads, k)
        parts = parts_of(chunks) if chunks else xp.zeros(0, dtype=np.float64)
    send = xp.zeros(width, dtype=np.float64)
    n_in = len(plans[lay.rank][0])
    send[:n_in] = parts
    at, mine = 0, send[n_in : n_in + -(-lens[lay.rank] // per_word)].view(dtype)
    for i, a, b in plan.mine:
        mine[at : at + b - a] = grads[i].reshape(-1)[a:b]
        at += b - a
    every = comm.allgather(send, check=False) if width and world > 1 else send

    def edge(r: int, a: int, b: int):
        """Flat elements ``[a, b)`` among rank ``r``'s gathered edges."""
        block = every[r * width + len(plans[r][0]) : (r + 1) * width].view(dtype)
        at = 0
        for ea, eb in edges[r]:
            if ea <= a and b <= eb:
                return block[at + a - ea : at + b - ea]
            at += eb - ea
        raise AssertionError(f"flat range [{a}, {b}) not in rank {r}'s edges")  # (not reachable)

    cut = [xp.concatenate([edge(q, a, b) for q, a, b in held]) for held in plan.cuts]
    cut_parts = parts_of(cut) if cut else xp.zeros(0, dtype=np.float64)
    out, c = [], 0
    for r, (inside, chunk) in enumerate(plans):
        out.append(every[r * width : r * width + len(inside)])
        if chunk is not None:
            out.append(cut_parts[c : c + 1])
            c += 1
    return xp.concatenate(out) if out else xp.zeros(0, dtype=np.float64)
