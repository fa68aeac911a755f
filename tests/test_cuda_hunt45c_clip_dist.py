"""``clip_grad_norm_(..., comm=)`` on CuPy gradients: one definition of the norm's end, bit for bit.

The GPU ranks' norm at p other than 1 and 2 took each rank's own norm (its own scale), raised it
to p again by the ranks' largest power of two, folded those in rank order and rooted the sum with
a Python copy of ``rules::pnorm_root`` (``_clip_global._root``): a second definition of the root,
and a norm up to 2 ulps off the one process's for values whose float64 sums are not exact (p =
1.5, 3, 5 here; at p = 1 and 2 the ranks' sums, folded in order, were off the GPU's tree too).
Now each rank sends the native kernel's stage-1 partials (``_cuda.grad_norm_parts``, its terms
scaled by the global max |g|) and the ranks' partials, concatenated in rank order, end in the
native ``_cuda.grad_norm_finish`` (the same stage-2 kernel and ``rules::pnorm_root`` as
``grad_norm``): the one process's norm to the bit, on the device (no host sync).
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 180  # s: a hang is a failure
P = (1.0, 2.0, 1.5, 3.0, 5.0)


def _cupy():
    """CuPy, and optkern's CUDA module: the emulated build where tools/cuda_emu/run set OKEMU_BUILD
    (its plugin, which loads that build, does not run in the mpiexec ranks)."""
    import optkern

    build = os.environ.get("OKEMU_BUILD")
    if build and os.path.join(build, "optkern") not in optkern.__path__:
        optkern.__path__.insert(0, os.path.join(build, "optkern"))
    import cupy as cp

    return cp


def _every(seed: int, dt):
    # (normal values: the float64 sums of their terms are rounded; 33000 > the kernel's chunk of
    # 32768, so one array spans two partials)
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3)).astype(dt) for n in (7, 1, 33000, 0, 300)]


def case_bits(comm) -> None:
    import optkern

    cp = _cupy()
    for dt in (np.float32, np.float64):
        for p in P:
            for seed in range(2):
                every = _every(seed, dt)
                cut = (seed + 2) % len(every)
                mine = every[:cut] if comm.rank == 0 else every[cut:]
                total = optkern.clip_grad_norm_([cp.asarray(g) for g in mine], 1e300, norm_type=p, comm=comm)
                got = float(cp.asnumpy(total).ravel()[0])
                want = optkern.clip_grad_norm_([cp.asarray(g) for g in every], 1e300, norm_type=p)
                want = float(cp.asnumpy(want)[0])
                assert got == want, (dt, p, seed, got.hex(), want.hex())


def case_zero(comm) -> None:
    # ZeRO-1 on CuPy: the shard's norm over the params' chunks of 32768 (a rank boundary inside
    # one), the ranks' partials ended on the device: the unsharded clip's norm and params
    import optkern
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    cp = _cupy()
    shapes = (33000, 3, 40000)
    for p in P:
        ps = [cp.linspace(-1.0, 1.0, n) for n in shapes]
        ref = [q.copy() for q in ps]
        z = ShardedOptimizer(optim.SGD, ps, comm, lr=0.5)
        opt = optim.SGD(ref, lr=0.5)
        grads = [cp.asarray(g) for g in _every(9, np.float64)[:3]]
        grads = [cp.asarray(np.resize(cp.asnumpy(g), n)) for g, n in zip(grads, shapes)]
        total = optkern.clip_grad_norm_(z.synchronize(grads), 1e-3, norm_type=p, comm=comm)
        with z.skip_synchronize():
            z.step(grads)
        want = optkern.clip_grad_norm_(grads, 1e-3, norm_type=p)
        opt.step(grads)
        got, want = float(cp.asnumpy(total).ravel()[0]), float(cp.asnumpy(want)[0])
        assert got == want, (p, got.hex(), want.hex())
        assert all(np.array_equal(cp.asnumpy(a), cp.asnumpy(b)) for a, b in zip(ps, ref)), p


@pytest.mark.spawns
def test_cupy_distributed_norm_is_the_one_process_norm_bit_for_bit():
    pytest.importorskip("mpi4py")
    from gpu import require_gpu

    require_gpu()
    run_case(__file__, "bits", 2, timeout=CASE_TIMEOUT)
    run_case(__file__, "zero", 2, timeout=CASE_TIMEOUT)


@pytest.mark.parametrize("p", P)
def test_parts_of_a_split_list_are_the_whole_lists_parts(p):
    # (no MPI: the split anywhere between arrays, each part's partials concatenated, ends as the whole)
    from gpu import require_gpu

    cp, cuda = require_gpu()
    every = [cp.asarray(g) for g in _every(3, np.float64)]
    amax = cp.zeros(1)
    cuda.grad_norm(every, math.inf, amax)
    want = cp.zeros(1)
    cuda.grad_norm(every, p, want)
    whole = cuda.grad_norm_parts(every, p, amax)
    assert whole.dtype == np.float64 and whole.shape == (1 + 1 + 2 + 1,)
    for cut in range(len(every) + 1):
        parts = cp.concatenate([cuda.grad_norm_parts(every[:cut], p, amax), cuda.grad_norm_parts(every[cut:], p, amax)])
        assert np.array_equal(cp.asnumpy(parts), cp.asnumpy(whole)), cut
    out = amax.copy()
    assert cuda.grad_norm_finish(whole, p, out) is None
    assert float(out[0]) == float(want[0]), (float(out[0]).hex(), float(want[0]).hex())
    exact = math.fsum(abs(float(v)) ** p for g in every for v in cp.asnumpy(g)) ** (1.0 / p)
    assert abs(float(out[0]) - exact) <= 4 * math.ulp(exact)


def test_parts_and_finish_refuse_bad_arguments():
    from gpu import require_gpu

    cp, cuda = require_gpu()
    g = [cp.ones(3, dtype=cp.float32)]
    out = cp.zeros(1)
    with pytest.raises(ValueError, match="norm_type"):
        cuda.grad_norm_parts(g, math.inf, out)
    with pytest.raises(ValueError, match="norm_type"):
        cuda.grad_norm_finish(cp.zeros(2), math.inf, out)
    with pytest.raises(TypeError, match="out"):
        cuda.grad_norm_parts(g, 2.0, np.zeros(1))
    with pytest.raises(TypeError, match="parts"):
        cuda.grad_norm_finish(np.zeros(2), 2.0, out)
    with pytest.raises(TypeError, match="parts"):
        cuda.grad_norm_finish(cp.zeros(2, dtype=cp.float32), 2.0, out)
    with pytest.raises(ValueError, match="parts"):
        cuda.grad_norm_finish(cp.zeros((2, 2)), 2.0, out)
    parts = cp.ones(4)
    with pytest.raises(ValueError, match="out"):
        cuda.grad_norm_finish(parts, 2.0, parts[1:2])  # (out inside parts: refused, nothing written)
    assert np.array_equal(cp.asnumpy(parts), np.ones(4))
    assert cuda.grad_norm_parts([], 2.0, out).shape == (0,)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
