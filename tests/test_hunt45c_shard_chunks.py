"""``distributed.sharded_clip.every_part``: the ranks' chunks of a ZeRO-1 layout are the params'
chunks, for any split (no MPI: each rank a thread, the allgather of parts and edges a barrier).

The parts every rank returns must be those of every param's chunks of ``k`` elements from its
first one, in order, each chunk one array with the param's values (the stand-in ``parts_of``
checks each chunk and returns its first value and length): then the ranks' partial sums are the
one process's (tests/test_hunt45c_zero_clip.py runs them under mpiexec).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from optkern.distributed.sharded_clip import ShardLayout, _edges, every_part


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


def _parts_of(chunks: list):
    """A chunk's "part": its first value and length, after checking it is one run of the params'
    values (each element its flat offset + 0.5, as ``_run`` fills them)."""
    for c in chunks:
        assert c.size and np.array_equal(c, c[0] + np.arange(c.size)), c
    return np.array([c[0] * 4096 + c.size for c in chunks])


def _run(sizes, world: int, k: int, gap: int = 0, groups_at=(), dtype=np.float64):
    """Every rank's parts of the chunks for params of ``sizes`` back to back (``gap`` zeros before each
    param past the first, as 8-bit states' alignment leaves; group boundaries before the params
    in ``groups_at``)."""
    offs, at = [], 0
    for i, n in enumerate(sizes):
        at += gap if i else 0
        offs.append(at)
        at += n
    span = at
    chunk = -(-span // world)
    flat = np.zeros(chunk * world, dtype=dtype)
    for o, n in zip(offs, sizes):
        flat[o : o + n] = np.arange(o, o + n) + 0.5
    bounds = tuple((min(r * chunk, span), min(min(r * chunk, span) + chunk, span)) for r in range(world))
    cuts = sorted({offs[i] for i in groups_at} | {0, span})
    comm, got = _Threads(world), [None] * world

    def rank_main(r: int) -> None:
        lo, hi = bounds[r]
        pieces = [(max(a, lo), min(b, hi)) for a, b in zip(cuts, cuts[1:]) if max(a, lo) < min(b, hi)]
        lay = ShardLayout(r, tuple(pieces), tuple(zip(offs, sizes)), bounds)
        grads = [flat[a:b] for a, b in pieces] or [flat[:0]]  # (as synchronize returns an empty slice)
        got[r] = every_part(lay, comm, np, grads, k, _parts_of)

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for r, t in enumerate(threads):
        t.rank = r  # type: ignore[attr-defined]
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert all(g is not None for g in got), "a rank did not finish"
    want = [(o + s + 0.5) * 4096 + min(k, n - s) for o, n in zip(offs, sizes) for s in range(0, n, k)]
    for r in range(world):  # (every rank the same parts, in the params' order)
        assert got[r].tolist() == want, (sizes, world, k, r, got[r], want)


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("k", [1, 3, 4, 16])
def test_every_rank_split_gives_the_params_chunks(world, k):
    rng = np.random.default_rng(world * 100 + k)
    for _ in range(12):
        sizes = [int(n) for n in rng.integers(0, 3 * k + 2, rng.integers(1, 6))]
        if sum(sizes) == 0:
            sizes.append(1)
        groups = [i for i in range(1, len(sizes)) if rng.random() < 0.3]
        dtype = (np.float64, np.float32)[int(rng.integers(0, 2))]  # (float32 edges: two in a word)
        _run(sizes, world, k, gap=int(rng.integers(0, 2)) * int(rng.integers(0, 3)), groups_at=groups, dtype=dtype)


def test_more_ranks_than_elements():
    _run([1, 0, 2], 7, 4)
    _run([3], 5, 1)


def test_a_chunk_spanning_many_ranks_is_sent_once_a_rank():
    # (one chunk of 20 over 4 ranks of 5: each rank's whole slice is one edge, the first rank's
    # the head of what it owns)
    lay = ShardLayout(0, ((0, 5),), ((0, 20),), ((0, 5), (5, 10), (10, 15), (15, 20)))
    assert _edges(lay, 0, 64) == [(0, 5)] and _edges(lay, 2, 64) == [(10, 15)]
    _run([20], 4, 64)
