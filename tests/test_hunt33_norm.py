"""Defects found in optkern.norm's float32 statistics by the 33rd hunt, each with a test that failed
before its fix.

rstd: the second pass summed Σ((x - k) - o)² in float32 lanes of a whole 2048-element chunk (64
terms a lane). For data of few distinct values every addition rounds the same way: a row of half a,
half b (exact variance ((a - b) / 2)²) had layer / group / instance norm's rstd up to 4 ulps off
(torch: 0.2), and random rows 1-5 ulps (1e4 + 0.01 N(0, 1): 5). Now a corrected two-pass:
Σ(x - m)² around the float32 mean m in float32 lanes over blocks of 8 terms a lane, added in
double, less n (mean - m)², the mean from a double Σx (norm_cpu.hpp's chunk_moments): within an
ulp. References: float64 on the float32 inputs.
"""

import numpy as np
import pytest

from optkern import norm
from ulps import ulps_of_f32

EPS = 1e-5


def _rstd_ref(x64, axes):
    return 1 / np.sqrt(x64.var(axis=axes) + EPS)


def _rstds(x):
    """(rstd, float64 reference) of layer, group (2 groups), instance and batch norm of x (R, M)."""
    R, M = x.shape
    x64 = x.astype(np.float64)
    out = {}
    _, s = norm.layer_norm(x, (M,), eps=EPS)
    out["layer"] = (s.rstd, _rstd_ref(x64, 1))
    xg = x.reshape(R, 4, M // 4)
    _, s = norm.group_norm(xg, 2, eps=EPS)
    out["group"] = (s.rstd, _rstd_ref(x64.reshape(R, 2, M // 2), 2))
    _, s = norm.instance_norm(x.reshape(1, R, M), eps=EPS)
    out["instance"] = (s.rstd, _rstd_ref(x64, 1))
    xb = np.ascontiguousarray(x.reshape(R, 4, M // 4).transpose(1, 0, 2))  # (N=4, C=R, S=M/4)
    _, s = norm.batch_norm(xb, training=True, eps=EPS)
    out["batch"] = (s.rstd, _rstd_ref(xb.astype(np.float64), (0, 2)))
    return out


@pytest.mark.parametrize("a, b", [(3.3, -3.3), (0.1, 0.2), (0.3, 0.9), (1.1, 2.9), (123.456, 0.5)])
@pytest.mark.parametrize("M", [4096, 65536])
def test_float32_rstd_of_rows_of_two_values(a, b, M):
    x = np.empty((2, M), np.float32)
    x[:, 0::2], x[:, 1::2] = a, b
    for kind, (rstd, ref) in _rstds(x).items():
        a32, b32 = float(np.float32(a)), float(np.float32(b))
        np.testing.assert_allclose(ref, 1 / np.sqrt(((a32 - b32) / 2) ** 2 + EPS), rtol=1e-15)
        assert ulps_of_f32(rstd, ref).max() <= 1, (kind, ulps_of_f32(rstd, ref).max())


@pytest.mark.parametrize("offset, spread", [(0.0, 1.0), (1e4, 1.0), (1e4, 0.01), (-3.0, 2.0), (0.5, 1e-4)])
@pytest.mark.parametrize("M", [1000, 4096])
def test_float32_rstd_of_random_rows_within_an_ulp(offset, spread, M):
    rng = np.random.default_rng(7)
    x = (offset + spread * rng.standard_normal((16, M))).astype(np.float32)
    for kind, (rstd, ref) in _rstds(x).items():
        assert ulps_of_f32(rstd, ref).max() <= 1, (kind, ulps_of_f32(rstd, ref).max())


# Batch norm of (N, C): the squared deviations of each channel were one float32 sum down its up to
# 16K rows (vectorized across the channels): columns of half a, half b had rstd ~300 ulps off,
# random columns ~8. Now summed over blocks of 8 rows in float32, the blocks in double.


@pytest.mark.parametrize("a, b", [(3.3, -3.3), (0.1, 0.2), (1.1, 2.9), (123.456, 0.5)])
@pytest.mark.parametrize("N", [4096, 40000])
def test_float32_batch_norm_rstd_of_columns_of_two_values(a, b, N):
    x = np.empty((N, 3), np.float32)
    x[0::2], x[1::2] = a, b
    _, s = norm.batch_norm(x, training=True, eps=EPS)
    ref = _rstd_ref(x.astype(np.float64), 0)
    assert ulps_of_f32(s.rstd, ref).max() <= 1, ulps_of_f32(s.rstd, ref).max()


@pytest.mark.parametrize("offset, spread", [(0.0, 1.0), (1e4, 1.0), (1e4, 0.01), (-3.0, 2.0)])
def test_float32_batch_norm_rstd_of_random_columns_within_an_ulp(offset, spread):
    rng = np.random.default_rng(8)
    x = (offset + spread * rng.standard_normal((40000, 5))).astype(np.float32)
    _, s = norm.batch_norm(x, training=True, eps=EPS)
    ref = _rstd_ref(x.astype(np.float64), 0)
    assert ulps_of_f32(s.rstd, ref).max() <= 1, ulps_of_f32(s.rstd, ref).max()
