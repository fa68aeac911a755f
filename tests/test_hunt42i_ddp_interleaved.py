"""DistributedOptimizer.synchronize and grads that are views interleaving in one buffer without
sharing an element: ``a[::2]`` and ``a[1::2]``, a matrix's column blocks.

Their byte spans overlap, and the in-place average's aliasing check (spans only, shared with
``optkern.clip``: ``_clip_checks._check_no_overlap``) refused them as "grads[1] shares memory with
grads[0]", where the buckets pack and unpack strided grads element by element. Meeting spans are
now tested exactly (``_array_checks.first_sharing``, as ZeRO and swa test params): each grad is
averaged once, exactly as separate copies are, at 1 and 2 ranks. Views sharing an element are
still refused, naming the later one, before any grad is written.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


def _layouts(dt, rank: int):
    # (multiples of 1/64 scaled by rank + 1: their means are exact; each layout its own buffer)
    line = (np.arange(21) % 11 - 5).astype(dt) * (rank + 1) / 64
    fused, mixed = ((np.arange(6 * 9) % 13 - 6).astype(dt).reshape(6, 9) * (rank + 1) / 64 for _ in range(2))
    return [
        (line, [line[::2], line[1::2]]),
        (fused, [fused[:, :4], fused[:, 4:7], fused[:, 7:]]),
        (mixed, [mixed[::2, ::3], mixed[1::2], mixed[::2, 1::3], mixed[::2, 2::3]]),  # (every element once)
    ]


def _ddp(comm, grads, **kw):
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    return DistributedOptimizer(optim.SGD([np.zeros(g.shape, g.dtype) for g in grads], lr=0.1), comm, **kw)


def _check_interleaved(comm, kw, mean) -> None:
    for dt in (np.float32, np.float64):
        for (buf, grads), (want, _) in zip(_layouts(dt, comm.rank), _layouts(dt, 0)):
            want = mean(want)
            _ddp(comm, grads, **kw).synchronize(grads)
            assert np.array_equal(buf, want), (dt, [g.shape for g in grads])


def _check_sharing_refused(comm, kw) -> None:
    line = np.arange(12, dtype=np.float32)
    for grads in ([line[::2], line[::4]], [line[1::2], line[:8][::-1]], [line[:7], line[6:]]):
        before = line.copy()
        with raises(ValueError, "grads[1] shares memory with grads[0]"):
            _ddp(comm, grads, **kw).synchronize(grads)
        assert np.array_equal(line, before)


def case_interleaved(comm) -> None:
    # (the average of rank r's g * (r + 1) over 2 ranks: g * 1.5)
    _check_interleaved(comm, {}, lambda g: g * 1.5)
    _check_sharing_refused(comm, {})


def test_interleaved_grads_synchronized_in_place_at_one_rank():
    from optkern.distributed import Communicator

    comm = Communicator()
    # (one rank averages nothing: a weight makes the reduction write every grad)
    _check_interleaved(comm, {"grad_weight": 0.5}, lambda g: g * 0.5)
    _check_sharing_refused(comm, {"grad_weight": 0.5})


@pytest.mark.spawns
def test_interleaved_grads_synchronized_in_place_at_two_ranks():
    run_case(__file__, "interleaved", 2, timeout=CASE_TIMEOUT)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
