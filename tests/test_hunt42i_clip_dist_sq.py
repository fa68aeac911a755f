"""``clip_grad_norm_(..., comm=comm)`` at p = 2: the ranks' sum of squares, rooted once.

Each rank took its local 2-norm (a square root), squared it again for the ranks' sum, and rooted
that: ``sqrt(s)^2`` is an ulp off ``s`` for most ``s``, and the global norm an ulp off the one
process's (which roots the exact float64 sum once): ZeRO + clip then clipped by another factor
than the unsharded clip, and the params drifted apart. Each rank now sends its ``||g||^2`` from
the native ``grad_sq_norm`` (the sum ``grad_norm``'s p = 2 roots, one definition), so where the
float64 sums are exact (elements of ±1/8 here) the global norm, the clipped grads and the params
are the single process's bit for bit, at 2 ranks.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


# (k0, k1): how many elements of ±1/8 each of two parts holds, the others 0; each pair's norm
# was an ulp off by the old squared roots: sqrt(sqrt(k0 / 64)^2 + sqrt(k1 / 64)^2) != sqrt((k0 + k1) / 64)
COUNTS = ((1, 2), (5, 1), (6, 3), (3, 6), (2, 7), (7, 5))


def _part(dt, k: int, n: int):
    return np.where(np.arange(n) < k, np.where(np.arange(n) % 2 == 0, 0.125, -0.125), 0.0).astype(dt)


def _zero_grads(dt, step: int):
    # (12 elements in params of 7 and 5: ZeRO gives each of 2 ranks a slice of 6, here k0 and k1 of
    # ±1/8; alike on every rank, so the mean is exact)
    k0, k1 = COUNTS[step]
    flat = np.concatenate([_part(dt, k0, 6), _part(dt, k1, 6)])
    return [flat[:7].copy(), flat[7:].copy()]


def case_zero_clip(comm) -> None:
    import optkern
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    for dt in (np.float32, np.float64):
        ps = [np.linspace(-1, 1, 7).astype(dt), np.linspace(0, 1, 5).astype(dt)]
        ref = [p.copy() for p in ps]
        z = ShardedOptimizer(optim.SGD, ps, comm, lr=0.5)
        opt = optim.SGD(ref, lr=0.5)
        for step in range(4):
            shard = z.synchronize(_zero_grads(dt, step))
            total = optkern.clip_grad_norm_(shard, 0.1, comm=comm)
            with z.skip_synchronize():
                z.step(_zero_grads(dt, step))
            grads = _zero_grads(dt, step)
            want = optkern.clip_grad_norm_(grads, 0.1)
            opt.step(grads)
            assert total == want, (dt, step, total.hex(), want.hex())
            assert all(np.array_equal(p, r) for p, r in zip(ps, ref)), (dt, step)


def case_parts(comm) -> None:
    # (each rank its own part of the gradient, rank r the r-th of COUNTS' pair)
    import optkern

    for dt in (np.float32, np.float64):
        for ks in COUNTS:
            every = [_part(dt, k, 8) for k in ks]
            mine = [every[comm.rank].copy()]
            total = optkern.clip_grad_norm_(mine, 0.1, comm=comm)
            want = optkern.clip_grad_norm_(every, 0.1)
            assert total == want, (ks, total.hex(), want.hex())
            assert np.array_equal(mine[0], every[comm.rank])


@pytest.mark.spawns
def test_zero1_clip_is_the_single_process_clip_bit_for_bit_at_two_ranks():
    run_case(__file__, "zero_clip", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_distributed_two_norm_of_parts_is_the_whole_norm_at_two_ranks():
    run_case(__file__, "parts", 2, timeout=CASE_TIMEOUT)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_grad_sq_norm_is_the_sum_grad_norm_roots(dt):
    from optkern import _cpu

    rng = np.random.default_rng(7)
    xs = [rng.standard_normal(n).astype(dt) for n in (1, 1000, 33)]
    out = np.zeros(1)
    s = _cpu.grad_sq_norm(xs, out)
    assert out[0] == s
    assert math.sqrt(s) == _cpu.grad_norm(xs, 2.0, np.zeros(1))  # (one sum, rooted there)
    exact = math.fsum(float(v) ** 2 for x in xs for v in x)
    assert abs(s - exact) <= 1e-13 * exact
    with pytest.raises(TypeError, match="arrays"):
        _cpu.grad_sq_norm([np.zeros(3, np.int32)], out)
    with pytest.raises(ValueError, match="out"):
        _cpu.grad_sq_norm([xs[0]], out[:0])


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
