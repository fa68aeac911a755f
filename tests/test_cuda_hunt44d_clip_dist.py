"""CUDA twin of tests/test_hunt44d_clip_dist_every_p.py at 2 ranks: ``clip_grad_norm_(..., comm=)``
on CuPy gradients after the ranks' exchange became a count and an allgather of partial sums (the
kernel's partials, on the GPU too since hunt 45c: ``_cuda.grad_norm_parts``, ended by
``_cuda.grad_norm_finish``). Every rank reaches the same norm, the one process's to the bit; with
a rank holding no gradients (a NumPy buffer) among them, that rank ends the parts on the CPU (a
fold in order, not the GPU's tree): within two ulps there.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 120  # s: a hang is a failure


def _cupy():
    """CuPy, and optkern's CUDA module: the emulated build where tools/cuda_emu/run set OKEMU_BUILD
    (its plugin, which loads that build, does not run in the mpiexec ranks)."""
    import optkern

    build = os.environ.get("OKEMU_BUILD")
    if build:
        optkern.__path__.insert(0, os.path.join(build, "optkern"))
    import cupy as cp

    return cp


def _every(seed: int):
    rng = np.random.default_rng(seed)
    return [(rng.choice([-1.0, 1.0], n) * 2.0 ** -rng.integers(0, 6, n)) for n in (7, 1, 300, 0, 5)]


def _ulps(a: float, b: float) -> float:
    return abs(a - b) / math.ulp(max(abs(a), abs(b), 1e-300))


def case_cupy(comm) -> None:
    import optkern

    cp = _cupy()
    for p in (1.0, 2.0, 1.5, 3.0, 5.0, 7.0, math.inf):
        for seed in range(3):
            every = _every(seed)
            cut = (seed + 1) % len(every)
            mine = every[:cut] if comm.rank == 0 else every[cut:]
            total = optkern.clip_grad_norm_([cp.asarray(g) for g in mine], 1e300, norm_type=p, comm=comm)
            got = float(cp.asnumpy(total).ravel()[0])
            want = float(cp.asnumpy(optkern.clip_grad_norm_([cp.asarray(g) for g in every], 1e300, norm_type=p))[0])
            assert got == want, (p, seed, got, want)
            seen = np.array([got])
            comm.allreduce(seen, "max")
            assert seen[0] == got, (p, seed)  # the same on every rank


def case_cupy_and_empty(comm) -> None:
    # rank 1 holds no gradients: its buffer is a NumPy one, its parts none, the collectives the same
    import optkern

    cp = _cupy()
    every = _every(7)
    for p in (1.0, 2.0, 3.0, 7.0, math.inf):
        mine = [cp.asarray(g) for g in every] if comm.rank == 0 else []
        total = optkern.clip_grad_norm_(mine, 1e300, norm_type=p, comm=comm)
        got = float(cp.asnumpy(total).ravel()[0]) if comm.rank == 0 else total
        want = float(cp.asnumpy(optkern.clip_grad_norm_([cp.asarray(g) for g in every], 1e300, norm_type=p))[0])
        assert _ulps(got, want) <= 2.0, (p, got, want)


@pytest.mark.spawns
def test_cupy_distributed_norm_at_two_ranks():
    pytest.importorskip("mpi4py")
    from gpu import require_gpu

    require_gpu()
    run_case(__file__, "cupy", 2, timeout=CASE_TIMEOUT)
    run_case(__file__, "cupy_and_empty", 2, timeout=CASE_TIMEOUT)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
