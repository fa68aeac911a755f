"""``clip_grad_norm_(..., comm=comm)`` for p not in {1, 2, inf} (up to 6): the ranks' norms were raised
to p, summed and rooted unscaled -- the root moved by ln(sum) / p of 1 / p's rounding (gradients of
1e30: 30-odd ulps off the exact norm) and norms past 1e102 (p = 3) overflowed to inf (every rank's
gradients zeroed). Now scaled by the power of two of the largest rank norm and rooted as
rules::pnorm_root roots (clip._root), as one process's norm is (tests/test_hunt37_clip_pnorm.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60


@pytest.mark.spawns
def test_distributed_p_norm_within_two_ulps_of_the_exact_norm():
    run_case(__file__, "p_norm", 2, timeout=CASE_TIMEOUT)


def _rank_grads(r: int, scale: float, p: float):
    rng = np.random.default_rng(100 * r + int(p * 10) + int(np.log10(scale) + 400))
    return [rng.standard_normal(n) * scale for n in (301, 17)]


def case_p_norm(comm) -> None:
    import optkern
    from test_hunt37_clip_pnorm import exact_norm, ulps

    r = comm.rank
    for p in (1.5, 3.0, 5.0):
        for scale in (1.0, 1e30, 1e-30, 1e120, 1e-150):
            grads = _rank_grads(r, scale, p)
            every = [g for k in range(comm.size) for g in _rank_grads(k, scale, p)]
            ref = exact_norm(every, p)
            total = optkern.clip_grad_norm_(grads, 1e300, norm_type=p, comm=comm)
            assert abs(ulps(total, ref)) <= 2.0, (p, scale, total, float(ref), ulps(total, ref))
            got = comm.allgather_object(total)
            assert got[0] == got[1]


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
