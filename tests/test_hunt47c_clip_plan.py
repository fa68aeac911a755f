"""ZeRO-1 clipping's plan (which rank sums which chunk of which param, what it sends) made once per
layout: ``every_part`` listed every rank's chunks and edges on every step, and found each chunk's
array by scanning all of a rank's arrays (~50 ms a step at 1000 params on 2 ranks, bench/zero_clip.py
and the numbers in the commit). The plan is keyed by the layout's value, so a changed layout (other
sizes, another dtype, a param added) gets its own, never a stale one.

Two ranks are run in this process: rank 1's row is taken first (its collective faked), then rank 0
gathers both; the result must be the one process's partial sums, each param cut into chunks from
its first element, in flat order (an independent float64 reference)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern.distributed import sharded_clip as sc


def _layout(sizes, rank: int, world: int = 2) -> sc.ShardLayout:
    params, o = [], 0
    for n in sizes:
        params.append((o, n))
        o += n
    chunk = -(-o // world)
    bounds = tuple((min(r * chunk, o), min(r * chunk + chunk, o)) for r in range(world))
    lo, hi = bounds[rank]
    pieces = tuple((max(a, lo), min(a + n, hi)) for a, n in params if max(a, lo) < min(a + n, hi))
    return sc.ShardLayout(rank, pieces, tuple(params), bounds)


class _Comm:
    """A 2-rank collective, faked: ``allgather`` returns ``rows`` with this rank's row put in."""

    size = 2

    def __init__(self, rank: int, rows: list) -> None:
        self.rank, self.rows, self.sent = rank, rows, None

    def allgather(self, send, check=False):
        self.sent = send.copy()
        rows = [r if r is not None else np.zeros_like(send) for r in self.rows]
        rows[self.rank] = send
        return np.concatenate(rows)


def _parts(chunks) -> np.ndarray:
    return np.array([float(np.sum(c, dtype=np.float64)) for c in chunks])


def _both_ranks(sizes, dtype, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rank 0's gathered parts, the one process's parts) for params of ``sizes``."""
    rng = np.random.default_rng(seed)
    flat = rng.standard_normal(sum(sizes)).astype(dtype)
    sent: list = [None, None]
    out = None
    for rank in (1, 0):
        lay = _layout(sizes, rank)
        grads = [flat[a:b].copy() for a, b in lay.pieces]
        comm = _Comm(rank, sent)
        res = sc.every_part(lay, comm, np, grads, k, _parts, _parts(sc.inside_chunks(lay, grads, k)))
        sent[rank] = comm.sent
        out = res
    ref, o = [], 0
    for n in sizes:
        ref += [float(np.sum(flat[o + s : o + min(s + k, n)], dtype=np.float64)) for s in range(0, n, k)]
        o += n
    return out, np.array(ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_parts_are_the_one_process_parts_across_layout_changes(dtype):
    k = 16
    a, b = [7, 40, 1, 33, 0, 64], [50, 3, 29, 17]
    for sizes, seed in ((a, 0), (b, 1), (a, 2), (a + [5], 3), (b, 4)):  # (back and forth: no stale plan)
        got, ref = _both_ranks(sizes, dtype, k, seed)
        np.testing.assert_array_equal(got, ref)


def test_the_plan_is_made_once_per_layout(monkeypatch):
    calls = [0]
    starts = sc._starts

    def counted(*args):
        calls[0] += 1
        return starts(*args)

    monkeypatch.setattr(sc, "_starts", counted)
    sizes = [30, 5, 70, 12]
    _both_ranks(sizes, np.float32, 16, 0)
    first = calls[0]
    assert first > 0
    for seed in range(1, 6):  # (new layout objects of the same value, each step: no new plan)
        _both_ranks(sizes, np.float32, 16, seed)
    assert calls[0] == first
    _both_ranks(sizes, np.float64, 16, 0)  # (another dtype: its own plan)
    _both_ranks(sizes + [3], np.float32, 16, 0)  # (another layout)
    assert calls[0] > first
