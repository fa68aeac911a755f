"""``clip_grad_norm_(..., comm=comm)`` at every p: bit for bit the single process's on the same
arrays, whatever the data and however the arrays are split over the ranks.

For p in (1, 6) other than 2, each rank took its own norm (its terms scaled by its own max |g|,
rooted), the ranks raised those to p again by the global max's power of two and rooted the sum:
the roots' rounding and the other scale left the global norm an ulp or more off the one process's
(random gradients at 2 ranks: 25 of 80 at p = 1.5, 28 of 80 at p = 3), so ZeRO / tensor-parallel
clipping scaled by another factor than the unsharded clip. At p = 1 and 2 (and p > 6) the ranks'
sums were added, ``(a + b) + (c + d)`` where the one process folds ``((a + b) + c) + d``: equal only
where every float64 sum is exact (7 and 4 of 80 random cases differed at 2 ranks).

Now every rank sends the partial sums the single process folds (``grad_norm_parts``: one a chunk
of the native kernel's fixed blocking; for p > 6 one an array), its terms scaled by the global max
|g|; the ranks gather them (padded with zeros, which add nothing) and fold them in rank order with
the kernel's own ``grad_norm_finish``: the same additions in the same order, rooted once.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)
PS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 5.9, 7.0, 9.5)


def _every(dt, seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 7))
    sizes = rng.integers(0, 200, n)
    if seed % 5 == 0:
        sizes[0] = 70_001  # (past the kernel's 65536-element chunk: several partials in one array)
    scale = 10.0 ** float(rng.choice([-30.0, -3.0, 0.0, 2.0, 30.0] if dt == np.float64 else [-3.0, 0.0, 2.0]))
    return [(rng.standard_normal(int(s)) * scale).astype(dt) for s in sizes]


def _split(n: int, ranks: int, seed: int) -> list:
    cuts = np.sort(np.random.default_rng(1000 + seed).integers(0, n + 1, ranks - 1))
    return [0, *cuts.tolist(), n]


def case_random(comm) -> None:
    import optkern

    bad = []
    for dt in (np.float32, np.float64, np.float16):
        for p in PS:
            for seed in range(12):
                every = _every(dt, seed)
                b = _split(len(every), comm.size, seed)
                lo, hi = b[comm.rank], b[comm.rank + 1]
                mine = [g.copy() for g in every[lo:hi]]
                total = optkern.clip_grad_norm_(mine, 1e-3, norm_type=p, comm=comm)
                whole = [g.copy() for g in every]
                want = optkern.clip_grad_norm_(whole, 1e-3, norm_type=p)
                if total != want or not all(np.array_equal(a, w) for a, w in zip(mine, whole[lo:hi])):
                    bad.append((np.dtype(dt).name, p, seed, total.hex(), want.hex()))
    assert not bad, f"{len(bad)} differ: {bad[:8]}"


def case_nonfinite(comm) -> None:
    # a NaN or inf on one rank: every rank's norm is the one process's (NaN / inf), p any
    import optkern

    for bad in (np.nan, np.inf):
        for p in PS:
            every = [np.linspace(-1, 1, 9), np.arange(4.0), np.full(3, 0.5)]
            every[-1][1] = bad
            mine = [every[comm.rank].copy()] if comm.rank < 3 else []
            if comm.rank == comm.size - 1:
                mine += [g.copy() for g in every[comm.size :]]
            total = optkern.clip_grad_norm_(mine, 1.0, norm_type=p, comm=comm)
            want = optkern.clip_grad_norm_([g.copy() for g in every], 1.0, norm_type=p)
            assert np.array_equal(total, want, equal_nan=True), (bad, p, total, want)


@pytest.mark.spawns
@pytest.mark.parametrize("ranks", [2, 4])
def test_distributed_norm_of_any_split_is_the_single_process_norm_bit_for_bit(ranks):
    run_case(__file__, "random", ranks, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_distributed_norm_with_a_nonfinite_gradient_on_one_rank():
    run_case(__file__, "nonfinite", 2, timeout=CASE_TIMEOUT)


def test_parts_fold_to_grad_norm_at_every_p():
    # the single process's norm is grad_norm_finish of grad_norm_parts: one definition, two calls
    from optkern import _cpu

    rng = np.random.default_rng(3)
    for dt in (np.float32, np.float64):
        xs = [rng.standard_normal(n).astype(dt) * 7 for n in (5, 70_000, 0, 1, 300)]
        for p in PS[:-2]:
            amax = np.array([_cpu.grad_norm(xs, float("inf"), np.zeros(1))])
            parts = _cpu.grad_norm_parts(xs, p, amax)
            assert parts.dtype == np.float64 and parts.size == 5  # (chunks: 1 + 2 + 0 + 1 + 1)
            out = amax.copy()
            got = _cpu.grad_norm_finish(parts, p, out)
            assert got == out[0] == _cpu.grad_norm(xs, p, np.zeros(1)), (dt, p)
            # zeros appended (a rank's padding) add nothing
            assert _cpu.grad_norm_finish(np.concatenate([parts, np.zeros(3)]), p, amax.copy()) == got


def test_parts_and_finish_refuse_bad_arguments_before_writing():
    from optkern import _cpu

    xs = [np.ones(3)]
    out = np.array([5.0])
    with pytest.raises(ValueError, match="norm_type"):
        _cpu.grad_norm_parts(xs, float("inf"), out)
    with pytest.raises(ValueError, match="norm_type"):
        _cpu.grad_norm_finish(np.ones(2), float("inf"), out)
    with pytest.raises(ValueError, match="norm_type"):
        _cpu.grad_norm_parts(xs, 0.5, out)
    with pytest.raises(ValueError, match="out"):  # (checked as grad_norm's out: apart from the arrays)
        _cpu.grad_norm_parts([xs[0]], 2.0, xs[0][:1])
    with pytest.raises(TypeError, match="parts"):
        _cpu.grad_norm_finish(np.ones(2, np.float32), 2.0, out)
    with pytest.raises(ValueError, match="parts"):
        _cpu.grad_norm_finish(np.ones((2, 2)), 2.0, out)
    both = np.ones(3)
    with pytest.raises(ValueError, match="out"):
        _cpu.grad_norm_finish(both, 2.0, both[2:])
    assert out[0] == 5.0 and np.array_equal(both, np.ones(3))
    assert _cpu.grad_norm_finish(np.zeros(0), 3.0, out) == 0.0  # (no parts: the norm of nothing)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
