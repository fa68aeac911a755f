"""optkern.distributed with the newer features (a hunt at 2 ranks).

ZeRO-1 with stochastic rounding (``stochastic_rounding=True`` with ``master_weights``, or
``state_dtype="bfloat16"``, whose moments round stochastically): element i of all params draws
Philox word i, so no two elements of a step round with the same word and an optimizer's bits do not
depend on how its params are grouped. Each rank's local optimizer numbered its own slice from 0:
every rank rounded its slice with the words of the first ``chunk`` elements (the ranks' roundings
correlated, the same word for element ``j`` of every slice), and the steps were not the unsharded
(data parallel) optimizer's, bit for bit, as they are without stochastic rounding. Now the slices
draw the words of their global elements: ZeRO-1 (ordered) equals data parallel bit for bit.

``amp.GradScaler`` around a ``DistributedOptimizer`` / ``ShardedOptimizer`` of a low-precision
optimizer (``master_weights=True``, float16 / bfloat16 grads: loss scaling's very use) refused every
step: "float16 gradients are unscaled inside the optimizer's step: call scaler.step(optimizer, grads)
with a master_weights optimizer" -- which was the call. The scaler only knew an optimizer with
low-precision options of its own, not a wrapper of one. Now the wrapper reduces the scaled grads
first, the reduced grads are checked (an inf on one rank, or a sum that overflows, skips every rank)
and the wrapper steps on them with the scale handed to its optimizer, which unscales them after
widening: the one-process scaled run's bits. ZeRO-1's AdaGrad-Norm summed ``||g'||^2`` over the still
scaled grads (``b`` grew by ``scale^2``); it now unscales them as the unsharded step does.

The test launches this file under ``mpiexec -n N python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.spawns
def test_zero1_with_stochastic_rounding_steps_as_data_parallel_bit_for_bit():
    run_case(__file__, "sr_zero", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_grad_scaler_steps_a_wrapped_master_weights_optimizer_as_one_process():
    run_case(__file__, "scaler_lowp", 2, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _bits(a):
    return a.view(np.uint16) if a.dtype.itemsize == 2 else a.view(np.uint32)


def case_sr_zero(comm) -> None:
    import ml_dtypes

    from optkern import optim
    from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

    bf16 = np.dtype(ml_dtypes.bfloat16)
    cases = [
        (optim.Adam, np.float32, dict(lr=1e-2, state_dtype="bfloat16", seed=3)),
        (optim.AdamW, bf16, dict(lr=1e-2, master_weights=True, stochastic_rounding=True)),
        (optim.SGD, np.float16, dict(lr=1e-2, momentum=0.9, master_weights=True, stochastic_rounding=True)),
    ]
    for cls, dt, hyper in cases:
        rng = np.random.default_rng(0)  # the same params on every rank
        params = [rng.standard_normal(n).astype(np.float32).astype(dt) for n in (301, 7, 2050)]
        zp, dp = [p.copy() for p in params], [p.copy() for p in params]
        z = ShardedOptimizer(cls, zp, Communicator(comm.mpi, ordered=True), **hyper)
        d = DistributedOptimizer(cls(dp, **hyper), Communicator(comm.mpi, ordered=True))
        for s in range(3):
            r = np.random.default_rng(100 * s + comm.rank)
            g = [r.standard_normal(p.size).astype(np.float32).astype(dt) for p in params]
            z.step([x.copy() for x in g])
            d.step([x.copy() for x in g])
            for i, (a, b) in enumerate(zip(zp, dp)):
                assert np.array_equal(_bits(a), _bits(b)), (cls.__name__, hyper, s, i)


def _mean(gs, dt):
    """The rank-ordered mean of ``gs`` as the communicator takes it (bfloat16 summed in float32)."""
    if dt == np.float16:
        return sum(gs[1:], gs[0]) * dt.type(1 / len(gs))
    return (sum((x.astype(np.float32) for x in gs[1:]), gs[0].astype(np.float32)) * np.float32(1 / len(gs))).astype(dt)


def case_scaler_lowp(comm) -> None:
    import ml_dtypes

    from optkern import amp, optim
    from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

    for dt in (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)):
        for cls, hyper in ((optim.AdamW, dict(lr=1e-2)), (optim.AdagradNorm, dict(lr=0.5, b0=0.1))):
            rng = np.random.default_rng(0)  # the same params on every rank
            params = [rng.standard_normal(n).astype(np.float32).astype(dt) for n in (301, 2050)]
            zp, dp, onep = ([p.copy() for p in params] for _ in range(3))
            z = ShardedOptimizer(cls, zp, Communicator(comm.mpi, ordered=True), master_weights=True, **hyper)
            d = DistributedOptimizer(cls(dp, master_weights=True, **hyper), Communicator(comm.mpi, ordered=True))
            one = cls(onep, master_weights=True, **hyper)
            scalers = [amp.GradScaler(init_scale=64.0, growth_interval=1) for _ in range(3)]
            for s in range(4):
                r = np.random.default_rng(10 * s + comm.rank)
                g = [(r.standard_normal(p.size) * 64).astype(np.float32).astype(dt) for p in params]
                if s == 1 and comm.rank == 1:
                    g[1][5] = np.inf  # (one rank only: every rank skips)
                every = comm.mpi.allgather([x.copy() for x in g])
                for sc, opt, grads in zip(scalers, (z, d, one), ([x.copy() for x in g], g, None)):
                    sc.step(opt, grads if grads is not None else [_mean(gs, dt) for gs in zip(*every)])
                    sc.update()
                assert scalers[0].get_scale() == scalers[1].get_scale() == scalers[2].get_scale(), s
                assert scalers[0].get_scale() == [128.0, 64.0, 128.0, 256.0][s], s
                for a, b, c in zip(zp, dp, onep):
                    assert np.array_equal(b.view(np.uint16), c.view(np.uint16)), (dt, cls.__name__, s)
                    if cls is optim.AdamW:
                        assert np.array_equal(a.view(np.uint16), c.view(np.uint16)), (dt, cls.__name__, s)
                if cls is optim.AdagradNorm:  # (||g'||^2 summed in another order: the masters, to rounding)
                    full, want = z.consolidate_state_dict(to=None)["state"], d.optimizer.state_dict()["state"]
                    for i in range(len(params)):
                        np.testing.assert_allclose(full[i]["master_param"], want[i]["master_param"], rtol=1e-6)
            assert not all(np.array_equal(a.view(np.uint16), b.view(np.uint16)) for a, b in zip(zp, params))


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
