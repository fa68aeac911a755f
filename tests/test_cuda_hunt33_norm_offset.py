"""CUDA norm statistics of data with a large offset (hunt 33).

The GPU's layer / group / instance norm rows (cuda/norm_rows.cu) and batch norm channels
(cuda/norm_channels.cuh) summed each thread's values by a float32 Welford update, mean += d / n,
which rounds the running mean to the offset's ulp at every step: for x = 1e4 + N(0, 1) rstd was
361 ulps off a float64 reference, for 1e4 + 0.01 N(0, 1) 91,047 ulps (1 %). Each thread now keeps
shifted sums in double (rules::push_shifted), merged as moments in double: mean and rstd are the
float64 values rounded once, as the CPU's corrected two-pass gives (cpp/norm_cpu.hpp).

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import norm

cp, _ = require_gpu()

from test_cuda_norm import _bf16_ok  # noqa: E402 (after the skip: it needs CuPy)
from ulps import ulps_of_f32  # noqa: E402

EPS = 1e-5
SIZES = [1, 7, 1023, 4097, 65536]


# (dtype, offset, spread): the spread a few of the dtype's steps at the offset or more.
DATA = [("float32", 1e4, 1.0), ("float32", 1e4, 0.01), ("float32", -3e5, 0.5), ("float16", 1e3, 2.0)]
DATA += [("bfloat16", 1e3, 40.0)] if _bf16_ok() else []


def offset_data(shape, dtype, loc, scale, seed):
    """The GPU array and its values in float64 (the inputs rounded to dtype)."""
    rng = np.random.default_rng(seed)
    v = (loc + scale * rng.standard_normal(shape)).astype(np.float32)
    g = cp.asarray(v).astype(dtype)
    return g, cp.asnumpy(g.astype(cp.float32)).astype(np.float64)


def reference(x64, axes):
    """mean and rstd over `axes` in float64 (eps as the float32 statistics see it)."""
    mean = x64.mean(axis=axes)
    var = ((x64 - np.expand_dims(mean, axes)) ** 2).mean(axis=axes)
    return mean, 1.0 / np.sqrt(var + float(np.float32(EPS)))


def check(saved, x64, axes, what):
    mean, rstd = reference(x64, axes)
    got_m, got_r = cp.asnumpy(saved.mean), cp.asnumpy(saved.rstd)
    assert got_m.dtype == np.float32 and got_r.dtype == np.float32, what
    um, ur = ulps_of_f32(got_m, mean).max(), ulps_of_f32(got_r, rstd).max()
    # mean and rstd rounded once from values accurate far below float32's precision: <= 0.5 ulp
    # (a margin for the double sums' own rounding); the float32 Welford update: up to 91,047.
    assert um <= 0.55 and ur <= 0.55, f"{what}: mean {um:.3g} ulps, rstd {ur:.3g} ulps"


@pytest.mark.parametrize("dtype,loc,scale", DATA)
@pytest.mark.parametrize("M", SIZES)
def test_layer_norm_statistics_of_offset_rows(M, dtype, loc, scale):
    R = 2 if M == 65536 else 3
    x, x64 = offset_data((R, M), dtype, loc, scale, M)
    _, saved = norm.layer_norm(x, (M,), eps=EPS)
    check(saved, x64, (1,), f"layer_norm {dtype} M={M}")


@pytest.mark.parametrize("dtype,loc,scale", DATA)
@pytest.mark.parametrize("M", SIZES)
def test_group_and_instance_norm_statistics_of_offset_rows(M, dtype, loc, scale):
    N, G = 2, 2
    Cg = 2 if M % 2 == 0 else 1  # M = Cg * S values a row
    x, x64 = offset_data((N, G * Cg, M // Cg), dtype, loc, scale, M + 1)
    _, saved = norm.group_norm(x, G, eps=EPS)
    check(saved, x64.reshape(N, G, M), (2,), f"group_norm {dtype} M={M}")
    if M > 1:  # (instance norm, as torch's, needs more than one value a row)
        x, x64 = offset_data((N, 2, M), dtype, loc, scale, M + 2)
        _, saved = norm.instance_norm(x, eps=EPS)
        check(saved, x64, (2,), f"instance_norm {dtype} M={M}")


# (N, S) for each channel size N S: S == 1 (the channel tiles' path) and S > 1 (a block a channel);
# training batch norm, as torch's, needs more than one value a channel.
CHANNEL_SHAPES = {2: [(2, 1), (1, 2)], 7: [(7, 1), (1, 7)], 1023: [(1023, 1), (3, 341)]}
CHANNEL_SHAPES.update({4097: [(4097, 1), (17, 241)], 65536: [(65536, 1), (16, 4096)]})


@pytest.mark.parametrize("dtype,loc,scale", DATA)
@pytest.mark.parametrize("M", sorted(CHANNEL_SHAPES))
def test_batch_norm_statistics_of_offset_channels(M, dtype, loc, scale):
    C = 3
    for N, S in CHANNEL_SHAPES[M]:
        shape = (N, C) if S == 1 else (N, C, S)
        x, x64 = offset_data(shape, dtype, loc, scale, M + 3)
        _, saved = norm.batch_norm(x, eps=EPS)
        check(saved, x64, (0,) if S == 1 else (0, 2), f"batch_norm {dtype} N={N} S={S}")
