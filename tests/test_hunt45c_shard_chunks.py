"""``distributed.sharded_clip.owned_chunks``: the ranks' chunks of a ZeRO-1 layout are the params'
chunks, for any split (no MPI: each rank a thread, the allgather of the edges a barrier).

Each rank's list, concatenated in rank order, must be every param's chunks of ``k`` elements from
its first one, in order, each one array with the param's values: then the ranks' partial sums
are the one process's (tests/test_hunt45c_zero_clip.py runs them under mpiexec).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from optkern.distributed.sharded_clip import ShardLayout, _edges, owned_chunks


class _Threads:
    """``allgather`` of one array a rank, each rank a thread."""

    def __init__(self, world: int) -> None:
        self.slots: list = [None] * world
        self.barrier = threading.Barrier(world)

    def allgather(self, send, check=False):
        rank = threading.current_thread().rank  # type: ignore[attr-defined]
        self.slots[rank] = send.copy()
        self.barrier.wait()
        out = np.concatenate(self.slots)
        self.barrier.wait()
        return out


def _run(sizes, world: int, k: int, gap: int = 0, groups_at=()):
    """Every rank's owned chunks for params of ``sizes`` back to back (``gap`` zeros before each
    param past the first, as 8-bit states' alignment leaves; group boundaries before the params
    in ``groups_at``)."""
    offs, at = [], 0
    for i, n in enumerate(sizes):
        at += gap if i else 0
        offs.append(at)
        at += n
    span = at
    chunk = -(-span // world)
    flat = np.zeros(chunk * world)
    for o, n in zip(offs, sizes):
        flat[o : o + n] = np.arange(o, o + n) + 0.5
    bounds = tuple((min(r * chunk, span), min(min(r * chunk, span) + chunk, span)) for r in range(world))
    cuts = sorted({offs[i] for i in groups_at} | {0, span})
    comm, got = _Threads(world), [None] * world

    def rank_main(r: int) -> None:
        lo, hi = bounds[r]
        pieces = [(max(a, lo), min(b, hi)) for a, b in zip(cuts, cuts[1:]) if max(a, lo) < min(b, hi)]
        lay = ShardLayout(r, tuple(pieces), tuple(zip(offs, sizes)), bounds)
        got[r] = owned_chunks(lay, comm, np, [flat[a:b] for a, b in pieces], k)

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for r, t in enumerate(threads):
        t.rank = r  # type: ignore[attr-defined]
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert all(g is not None for g in got), "a rank did not finish"
    want = [flat[o + s : o + min(s + k, n)] for o, n in zip(offs, sizes) for s in range(0, n, k)]
    mine = [c for g in got for c in g]
    assert len(mine) == len(want), (sizes, world, k, [len(g) for g in got])
    for a, b in zip(mine, want):
        assert np.array_equal(a, b), (sizes, world, k, a, b)


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("k", [1, 3, 4, 16])
def test_every_rank_split_gives_the_params_chunks(world, k):
    rng = np.random.default_rng(world * 100 + k)
    for _ in range(12):
        sizes = [int(n) for n in rng.integers(0, 3 * k + 2, rng.integers(1, 6))]
        if sum(sizes) == 0:
            sizes.append(1)
        groups = [i for i in range(1, len(sizes)) if rng.random() < 0.3]
        _run(sizes, world, k, gap=int(rng.integers(0, 2)) * int(rng.integers(0, 3)), groups_at=groups)


def test_more_ranks_than_elements():
    _run([1, 0, 2], 7, 4)
    _run([3], 5, 1)


def test_a_chunk_spanning_many_ranks_is_sent_once_a_rank():
    # (one chunk of 20 over 4 ranks of 5: each rank's whole slice is one edge, the first rank's
    # the head of what it owns)
    lay = ShardLayout(0, ((0, 5),), ((0, 20),), ((0, 5), (5, 10), (10, 15), (15, 20)))
    assert _edges(lay, 0, 64) == [(0, 5)] and _edges(lay, 2, 64) == [(10, 15)]
    _run([20], 4, 64)
