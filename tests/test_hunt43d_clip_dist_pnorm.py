"""``clip_grad_norm_(..., comm=comm)`` at p > 6 (the scaled norm ``m (sum (|g| / m)^p)^(1/p)``):
bit for bit the single process's where the float64 sums are exact.

Each rank took its own scaled norm (rooted), the ranks raised those to p again by the largest
rank's norm and rooted the sum: the roots' rounding left the global norm an ulp or more off the one
process's on the concatenated grads (ZeRO + clip then clipped by another factor than the unsharded
clip). Now each rank sends only its max |g|, scales its terms by the global max exactly as the one
process scales them (``_clip_global._scaled_sum``), the ranks add the sums (ordered) and the sum is
rooted once. p = inf (a max) was and stays exact. Elements here are ±2^-k: every term (2^-k)^p and
every sum is exact in float64, so the norms must be equal to the bit.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


def _parts(dt, seed: int):
    rng = np.random.default_rng(seed)
    sizes = (5, 1, 9, 3)
    return [(rng.choice([-1.0, 1.0], n) * 2.0 ** -rng.integers(0, 4, n)).astype(dt) for n in sizes]


def case_parts(comm) -> None:
    import optkern

    for dt in (np.float32, np.float64):
        for p in (7.0, 8.0, 12.0, 40.0, math.inf):
            for seed in range(6):
                every = _parts(dt, seed)
                mine = [g.copy() for g in every[2 * comm.rank : 2 * comm.rank + 2]]  # (2 arrays a rank)
                total = optkern.clip_grad_norm_(mine, 0.1, norm_type=p, comm=comm)
                whole = [g.copy() for g in every]
                want = optkern.clip_grad_norm_(whole, 0.1, norm_type=p)
                assert total == want, (dt, p, seed, total.hex(), want.hex())
                assert all(np.array_equal(a, b) for a, b in zip(mine, whole[2 * comm.rank : 2 * comm.rank + 2]))


def case_one_rank_empty(comm) -> None:
    # a rank without grads (its max 0, its sum 0): the other rank's norm alone
    import optkern

    every = _parts(np.float64, 3)
    mine = every if comm.rank == 0 else []
    total = optkern.clip_grad_norm_([g.copy() for g in mine], 1e9, norm_type=9.0, comm=comm)
    assert total == optkern.clip_grad_norm_([g.copy() for g in every], 1e9, norm_type=9.0)


@pytest.mark.spawns
def test_distributed_scaled_p_norm_of_parts_is_the_whole_norm_at_two_ranks():
    run_case(__file__, "parts", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_distributed_scaled_p_norm_with_a_rank_without_grads():
    run_case(__file__, "one_rank_empty", 2, timeout=CASE_TIMEOUT)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
