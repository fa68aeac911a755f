"""Batch norm's training statistics computed once (48th hunt, d): the means' low parts in the saved state.

Channels far from 0 normalize around the batch mean and its low part (rules::mean_lo, hunt 47k). The
forward computed the channels' moments in channel_stats, again in channel_norm_forward for the low
parts, and the backward a third time (each two or three reads of x). Now channel_stats writes the low
parts from its own moments into ``lo`` and ``BatchNormSaved.lo`` hands them to the forward and the
backward, which read no moments again. The bits must be those of the old path: the native calls
without ``lo`` (which still compute them from x) give the reference bits here, on far, ordinary and
mixed channels, every storage dtype, S = 1 and S > 1. The CUDA twin is
tests/test_cuda_hunt48d_bn_saved_lo.py.
"""

import math

import ml_dtypes
import numpy as np
import pytest

import optkern._cpu as cpu
from optkern.norm import functional as F

EPS = 1e-5
DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]
SHAPES = [(64, 3, 17), (1000, 3), (7, 2, 300)]


def data(dtype, shape, seed=0, far=True):
    """x with channel 1 ordinary and the others far from 0 (|mean| rstd >> 1; none: far=False); dy, w, b."""
    rng = np.random.default_rng(seed)
    base = {np.float32: 1e7 + 0.5, np.float64: 2.0**51 + 0.25}.get(dtype, 2048.0) if far else 0.0
    spread = 1.0 if dtype in (np.float32, np.float64) else 16.0
    x = base + spread * rng.standard_normal(shape)
    x[:, 1] = rng.standard_normal(x[:, 1].shape)
    C = shape[1]
    w, b = (1 + 0.1 * rng.standard_normal(C)).astype(dtype), rng.standard_normal(C).astype(dtype)
    return x.astype(dtype), rng.standard_normal(shape).astype(dtype), w, b


def bits(a):
    return np.asarray(a).view(np.uint8)


def old_path(x, dy, w, b, sv, xp=np, mod=cpu):
    """y, dx, dw, db by the native calls without lo (the low parts computed from x again)."""
    N, C = x.shape[0], x.shape[1]
    S = x.size // (N * C)
    y, dx = xp.empty_like(x), xp.empty_like(x)
    dw, db = xp.empty(C, dtype=w.dtype), xp.empty(C, dtype=w.dtype)
    mod.channel_norm_forward(x, sv.mean, sv.rstd, w, b, y, N, C, S, training=True)
    mod.channel_norm_backward(dy, x, sv.mean, sv.rstd, w, dx, dw, db, N, C, S, True)
    return y, dx, dw, db


def check_same_bits(dtype, shape, xp=np, mod=cpu, far=True):
    """batch_norm and its backward (lo handed over) against the calls without lo, bit for bit."""
    x, dy, w, b = (xp.asarray(a) for a in data(dtype, shape, far=far))
    y, sv = F.batch_norm(x, w, b, training=True, eps=EPS)
    assert sv.lo is not None and sv.lo.dtype == sv.mean.dtype and sv.lo.shape == (shape[1],)
    new = (y, *F.batch_norm_backward(dy, x, w, sv))
    # a saved tuple of three (no lo): the backward computes them again, the same bits
    old3 = F.batch_norm_backward(dy, x, w, tuple(sv)[:3])
    for name, a, o, o3 in zip(("y", "dx", "dw", "db"), new, old_path(x, dy, w, b, sv, xp, mod), (None, *old3)):
        asnp = getattr(xp, "asnumpy", np.asarray)
        assert np.array_equal(bits(asnp(a)), bits(asnp(o))), name
        if o3 is not None:
            assert np.array_equal(bits(asnp(a)), bits(asnp(o3))), name
    return sv


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_saved_lo_keeps_bits(dtype, shape):
    sv = check_same_bits(dtype, shape)
    lo = np.asarray(sv.lo)
    assert lo[1] == 0  # (the ordinary channel needs none)
    if dtype in (np.float32, np.float64):
        assert lo[0] != 0  # (the far channels' means are not exact in the statistics dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ordinary_data_keeps_bits(dtype):
    sv = check_same_bits(dtype, (64, 3, 17), far=False)
    assert not np.any(np.asarray(sv.lo))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lo_is_the_mean_low_part(dtype):
    check_lo_exact(dtype)


def check_lo_exact(dtype, xp=np):
    """lo against an independent reference: mean + lo is the exact batch mean (math.fsum of the values)
    to within the statistics dtype's rounding of that small difference, channel by channel."""
    x, _, _, _ = data(dtype, (64, 3, 17))
    _, sv = F.batch_norm(xp.asarray(x), training=True, eps=EPS)
    asnp = getattr(xp, "asnumpy", np.asarray)
    mean, lo = asnp(sv.mean), asnp(sv.lo)
    for c in (0, 2):
        v = x[:, c].astype(np.float64).ravel()
        exact = math.fsum(v) / v.size  # (a double: exact to its ulp, far below float32's)
        # the part of the exact mean the rounded one misses, in units of the rounded mean's ulp
        if dtype == np.float64:
            shift = float(v[0])
            exact_lo = math.fsum(v - shift) / v.size - (float(mean[c]) - shift)
        else:
            exact_lo = exact - float(mean[c])
        ulp = float(np.spacing(np.abs(mean[c])))
        assert abs(float(lo[c]) - exact_lo) <= 1e-3 * ulp, (c, float(lo[c]), exact_lo, ulp)


def test_backward_takes_the_saved_lo():
    """The backward uses saved.lo as given (it no longer computes it): another lo for the far channel
    changes dx and dweight there, and only there."""
    x, dy, w, b = data(np.float32, (64, 3, 17))
    _, sv = F.batch_norm(x, w, b, training=True, eps=EPS)
    dx, dw, _ = F.batch_norm_backward(dy, x, w, sv)
    lo = sv.lo.copy()
    lo[0] += np.float32(0.25)
    dx2, dw2, _ = F.batch_norm_backward(dy, x, w, sv._replace(lo=lo))
    assert not np.array_equal(dx[:, 0], dx2[:, 0]) and dw[0] != dw2[0]
    assert np.array_equal(bits(dx[:, 1:]), bits(dx2[:, 1:])) and np.array_equal(bits(dw[1:]), bits(dw2[1:]))


def test_module_and_eval():
    """The module's saved state carries lo through (the old path's bits); eval statistics have none."""
    from optkern.norm import BatchNorm

    x, dy, _, _ = data(np.float32, (64, 3, 17))
    m = BatchNorm(3)
    y = m(x)
    dx = m.backward(dy)
    assert m._saved.lo is not None
    oy, odx, odw, odb = old_path(x, dy, m.weight, m.bias, m._saved)
    assert np.array_equal(bits(y), bits(oy)) and np.array_equal(bits(dx), bits(odx))
    assert np.array_equal(bits(m.grad_weight), bits(odw)) and np.array_equal(bits(m.grad_bias), bits(odb))
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    _, ev = F.batch_norm(x, running_mean=rm, running_var=rv, training=False)
    assert ev.lo is None


def test_bad_lo_raises_before_writing():
    x, dy, w, b = data(np.float32, (8, 3, 5))
    _, sv = F.batch_norm(x, w, b, training=True, eps=EPS)
    out = np.full_like(x, 7.0)
    with pytest.raises(TypeError, match="^saved.lo: expected float32, got float64"):
        F.batch_norm_backward(dy, x, w, sv._replace(lo=sv.lo.astype(np.float64)), out=out)
    with pytest.raises(ValueError, match="^saved.lo"):
        F.batch_norm_backward(dy, x, w, sv._replace(lo=sv.lo[:2]), out=out)
    with pytest.raises(TypeError, match="^saved.lo"):
        F.batch_norm_backward(dy, x, w, sv._replace(lo=[0.0, 0.0, 0.0]), out=out)
    # eval statistics with a training call's low parts: another call's state
    with pytest.raises(ValueError, match="^saved.lo: the batch statistics' mean low parts go with training=True"):
        F.batch_norm_backward(dy, x, w, sv._replace(training=False), out=out)
    assert np.all(out == 7.0)
    N, C, S = 8, 3, 5
    y = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match="^lo: the batch statistics"):
        cpu.channel_norm_forward(x, sv.mean, sv.rstd, w, b, y, N, C, S, lo=sv.lo)
    with pytest.raises(ValueError, match="lo"):  # (lo is read while out is written)
        cpu.channel_norm_forward(x, sv.mean, sv.rstd, w, b, y, N, C, S, training=True, lo=y.reshape(-1)[:3])
    assert np.all(y == 7.0)
    mean, rstd, var = (np.full(C, 7.0, np.float32) for _ in range(3))
    with pytest.raises(ValueError, match="lo"):  # (written: must not alias another output)
        cpu.channel_stats(x, mean, rstd, var, N, C, S, EPS, mean)
    with pytest.raises(ValueError, match="^lo"):
        cpu.channel_stats(x, mean, rstd, var, N, C, S, EPS, np.empty(2, np.float32))
    with pytest.raises(ValueError, match="^lo"):  # (written: read-only refused)
        ro = np.empty(C, np.float32)
        ro.flags.writeable = False
        cpu.channel_stats(x, mean, rstd, var, N, C, S, EPS, ro)
    assert np.all(mean == 7.0) and np.all(rstd == 7.0) and np.all(var == 7.0)
