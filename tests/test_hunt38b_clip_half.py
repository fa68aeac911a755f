"""Gradient clipping of float16 / bfloat16 gradients (a ZeRO-1 optimizer's slice with
``master_weights``, a half model's grads): ``clip_grad_norm_`` refused them ("expected float32 or
float64"), where torch's accepts them. Now the norm is taken from the grads widened exactly to
float32 and accumulated in float64 (torch's half norm is rounded to the half type: past 65504 a
float16 norm is inf and torch zeroes the grads); the grads are scaled in place in their dtype, each
rounded once to nearest even from the float32 product. Checked against float64 references, on one
process and over the ranks (``comm=``)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import optkern
from mpi_cases import raises, run_case, run_here
from test_hunt37_clip_pnorm import exact_norm
from ulps import spacing_lowp  # (the 16-bit ulp)

ml_dtypes = pytest.importorskip("ml_dtypes")
HALVES = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
P = [1.0, 2.0, math.inf, 3.0, 8.0]


def _grads(dt, seed, scale=1.0, sizes=(301, 17, 1)):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * scale).astype(np.float32).astype(dt) for n in sizes]


def _check_clipped(before, after, dt, max_norm, norm) -> None:
    """Each clipped element within half a 16-bit ulp (plus float32's rounding of the factor and
    product) of the float64 product with the float64 factor."""
    coef = min(1.0, max_norm / (norm + 1e-6))
    for b, a in zip(before, after):
        assert a.dtype == dt
        want = b.astype(np.float64) * coef
        err = np.abs(a.astype(np.float64) - want)
        tol = 0.5 * spacing_lowp(want, dt) * (1 + 2.0**-10) + 2.0**-22 * np.abs(want)
        assert np.all(err <= tol), (dt, float(np.max(err / tol)))


@pytest.mark.parametrize("dt", HALVES, ids=str)
@pytest.mark.parametrize("p", P)
def test_half_norm_and_clip_match_float64(dt, p):
    for seed, scale in ((1, 1.0), (2, 1e3), (3, 1e-3)):
        g = _grads(dt, seed, scale)
        before = [x.copy() for x in g]
        ref = (
            float(exact_norm(before, p))
            if p != math.inf
            else max(float(np.max(np.abs(x.astype(np.float64)))) for x in g)
        )
        assert optkern.get_total_norm(g, norm_type=p) == pytest.approx(ref, rel=1e-12)
        max_norm = ref / 3
        total = optkern.clip_grad_norm_(g, max_norm, norm_type=p)
        assert isinstance(total, float)
        assert total == pytest.approx(ref, rel=1e-12)
        _check_clipped(before, g, dt, max_norm, ref)


@pytest.mark.parametrize("dt", HALVES, ids=str)
def test_half_no_clip_leaves_bits(dt):
    g = _grads(dt, 4)
    before = [x.copy() for x in g]
    optkern.clip_grad_norm_(g, 1e9)
    for b, a in zip(before, g):
        assert np.array_equal(b.view(np.uint16), a.view(np.uint16))


def test_float16_norm_past_its_range_still_clips():
    # every element 6e4: the norm (~1.5e6) is past float16's max (65504); torch's float16 norm is inf
    # and its factor 0 (the grads zeroed). Here the norm is finite and the grads are clipped.
    g = [np.full(600, 6e4, np.float16)]
    before = [g[0].copy()]
    total = optkern.clip_grad_norm_(g, 1.0)
    assert total == pytest.approx(6e4 * math.sqrt(600), rel=1e-12)
    _check_clipped(before, g, np.dtype(np.float16), 1.0, total)
    assert np.all(g[0] > 0)


@pytest.mark.parametrize("dt", HALVES, ids=str)
def test_half_out_nonfinite_and_none(dt):
    g = [None, *_grads(dt, 5)]
    out = np.zeros(1)
    total = optkern.clip_grad_norm_(g, 0.5, out=out)
    assert out[0] == total
    g[2][3] = np.inf
    kept = [x.copy() for x in g[1:]]
    with pytest.raises(optkern.clip.NonFiniteNormError, match=r"grads\[2\]"):
        optkern.clip_grad_norm_(g, 0.5, error_if_nonfinite=True, out=out)
    assert out[0] == total
    for b, a in zip(kept, g[1:]):
        assert np.array_equal(b.view(np.uint16), a.view(np.uint16))


@pytest.mark.parametrize("dt", HALVES, ids=str)
def test_half_bad_grads_refused_naming_them_before_writing(dt):
    a, b = _grads(dt, 6, sizes=(8, 8))
    keep = a.copy()
    with pytest.raises(TypeError, match=r"grads\[1\]"):
        optkern.clip_grad_norm_([a, b.astype(np.float32)], 1e-3)
    with pytest.raises(ValueError, match=r"grads\[1\].*contiguous"):
        optkern.clip_grad_norm_([a, np.zeros(16, dt)[::2]], 1e-3)
    with pytest.raises(ValueError, match=r"grads\[1\] shares memory"):
        optkern.clip_grad_norm_([a, a[2:]], 1e-3)
    ro = b.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"grads\[1\].*read-only"):
        optkern.clip_grad_norm_([a, ro], 1e-3)
    assert np.array_equal(a.view(np.uint16), keep.view(np.uint16))
    # the norm alone reads them: a read-only grad is fine, a mixed list is not
    assert optkern.get_total_norm([a, ro]) > 0
    with pytest.raises(TypeError, match=r"grads\[1\]"):
        optkern.get_total_norm([a, b.astype(np.float32)])


@pytest.mark.parametrize("dt", HALVES, ids=str)
def test_half_clip_value_and_with_norm(dt):
    g = _grads(dt, 7, scale=3.0)
    before = [x.copy() for x in g]
    optkern.clip_grad_value_(g, 1.5)
    for b, a in zip(before, g):
        want = np.clip(b.astype(np.float64), -1.5, 1.5).astype(dt)
        assert np.array_equal(a.view(np.uint16), want.view(np.uint16))
    g = [x.copy() for x in before]
    norm = optkern.get_total_norm(g)
    optkern.clip_grads_with_norm_(g, 1.0, norm)
    _check_clipped(before, g, dt, 1.0, norm)


# ---- over the ranks ------------------------------------------------------------------------------


@pytest.mark.spawns
def test_distributed_half_clip_matches_float64():
    pytest.importorskip("mpi4py")
    run_case(__file__, "half_clip", 2, timeout=90)


@pytest.mark.spawns
def test_zero1_half_slice_clips():
    pytest.importorskip("mpi4py")
    run_case(__file__, "zero_half_slice", 2, timeout=90)


def case_half_clip(comm) -> None:
    for dt in HALVES:
        for p in P:
            g = _grads(dt, 10 + comm.rank)
            every = [x for k in range(comm.size) for x in _grads(dt, 10 + k)]
            ref = (
                float(exact_norm(every, p))
                if p != math.inf
                else max(float(np.max(np.abs(x.astype(np.float64)))) for x in every)
            )
            before = [x.copy() for x in g]
            total = optkern.clip_grad_norm_(g, ref / 4, norm_type=p, comm=comm)
            assert total == pytest.approx(ref, rel=1e-12), (dt, p, total, ref)
            _check_clipped(before, g, dt, ref / 4, ref)
        with raises(ValueError, f"rank {1 - comm.rank}" if comm.rank == 0 else "contiguous"):
            bad = np.zeros(16, dt)[::2] if comm.rank == 1 else _grads(dt, 3)[0]
            optkern.clip_grad_norm_([bad], 1.0, comm=comm)


def case_zero_half_slice(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    for dt in HALVES:
        params = [np.zeros(n, dt) for n in (301, 17)]
        z = ShardedOptimizer(optim.SGD, params, comm, lr=1.0, master_weights=True)
        grads = _grads(dt, 20 + comm.rank, sizes=(301, 17))
        shard = z.synchronize([x.copy() for x in grads])
        assert all(s.dtype == dt for s in shard)
        slices = comm.allgather_object([x.astype(np.float64).ravel() for x in shard])
        whole = np.concatenate([x for rank in slices for x in rank])
        ref = math.sqrt(math.fsum(whole * whole))
        before = [x.copy() for x in shard]
        total = optkern.clip_grad_norm_(shard, ref / 2, comm=comm)
        assert total == pytest.approx(ref, rel=1e-12)
        _check_clipped(before, shard, dt, ref / 2, ref)
        with z.skip_synchronize():
            z.step()


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
