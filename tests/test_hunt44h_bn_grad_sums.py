"""Hunt 44h: batch norm's per-channel gradient sums Σ dy and Σ dy x̂ in double (the CPU's
GradSumKernel, cpp/norm_channels_kernels.hpp; its CUDA twin test_cuda_hunt44h_bn_grad_sums.py), and
dx from their means through the shared rule (rules::grad_means). With spatial dims (S > 1) the CPU
summed each run of S terms in float32 lanes: float32 channels of 16 runs of 32768 with
dy = 1 + 0.01 N(0, 1) (every addend rounding alike) and x with an offset had dx 8.4e-6, dγ 7.2e-5
and dβ 8.4e-8 relative off the exactly summed float32 terms; now the runs are block_sums (float
blocks of 8 terms a lane, added in double, as the row norms' sums): dx 2.9e-8, dγ 1.8e-5, dβ 0. (dγ's
sum cancels, Σ x̂ = 0: what is left of the blocks' float rounding is far below the 3e-3 to 8e-3 by
which the float32 statistics' own rounding moves it off the float64 reference.) Without spatial
dims (S = 1) the sums were in double already: exact.

Checked against the same terms summed exactly (x̂ and dy x̂ rounded to float32 as the kernels form
them, sums in float64: what is left is the kernels' summation) and against the float64 reference
with its own statistics (no worse than the exact-sum float32 formula).
"""

import numpy as np
import pytest

from optkern import norm

f32, f64 = np.float32, np.float64
EPS = 1e-5


def _rel(a, b):
    a, b = np.asarray(a, f64), np.asarray(b, f64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _channels(a, N, C):
    """(N, C, S) values as (C, N S) rows."""
    return np.ascontiguousarray(a.reshape(N, C, -1).transpose(1, 0, 2).reshape(C, -1))


def data(shape, seed):
    rng = np.random.default_rng(seed)
    x = (3 + rng.standard_normal(shape)).astype(f32)  # (an offset: x̂'s terms round)
    dy = (1 + 0.01 * rng.standard_normal(shape)).astype(f32)
    if shape[2] == 1:
        x, dy = x[:, :, 0], dy[:, :, 0]
    return x, dy


def _ref(dy, x):
    """float64 dx, dγ, dβ of (C, M) rows with their own statistics."""
    x, dy = x.astype(f64), dy.astype(f64)
    mu = x.mean(1, keepdims=True)
    rs = 1 / np.sqrt(((x - mu) ** 2).mean(1, keepdims=True) + EPS)
    xh = (x - mu) * rs
    dx = rs * (dy - dy.mean(1, keepdims=True) - xh * (dy * xh).mean(1, keepdims=True))
    return dx, (dy * xh).sum(1), dy.sum(1)


def errors(dx, dw, db, dy, x, mu, rs):
    """Relative errors of batch norm's dx, dw, db (NumPy; γ = 1, saved statistics mu, rs): against
    the exactly summed float32 terms, and (dx, dw, db) against the float64 reference with those of
    the exact-sum float32 results (dx, dw) beside them."""
    N, C = x.shape[:2]
    xr, dyr = _channels(x, N, C), _channels(dy, N, C)
    # x̂ as the kernels form it: ((x - mean) - lo) r, lo the mean's low part where |mean| r > 1
    # (rules::mean_lo: these channels at 3 + N(0, 1) take it), in float32 steps
    lo = np.where(np.abs(mu) * rs > 1, (xr.mean(1, dtype=f64) - mu).astype(f32), f32(0))
    xh = (((xr - mu[:, None]).astype(f32) - lo[:, None]).astype(f32) * rs[:, None]).astype(f32)
    sa, sb = dyr.sum(1, dtype=f64), (dyr * xh).astype(f32).sum(1, dtype=f64)
    m = xr.shape[1]
    mg, mgx = (sa / m).astype(f32)[:, None], (sb / m).astype(f32)[:, None]  # (rules::grad_means)
    inner = (-xh.astype(f64) * mgx + (dyr - mg)).astype(f32)  # (rules::norm_dx's fma)
    ex = (rs[:, None] * inner).astype(f32)
    got = _channels(dx, N, C)
    rdx, rdw, rdb = _ref(dyr, xr)
    exact = (_rel(got, ex), _rel(dw, sb.astype(f32)), _rel(db, sa.astype(f32)))
    ref = (_rel(got, rdx), _rel(ex, rdx), _rel(dw, rdw), _rel(sb.astype(f32), rdw), _rel(db, rdb))
    return exact, ref


def check(dx, dw, db, dy, x, mu, rs, bound):
    """errors() within `bound` (dx, dw, db against the exact sums), and against the float64
    reference no worse than the exact-sum float32 results."""
    exact, (dx_ref, ex_dx_ref, dw_ref, ex_dw_ref, db_ref) = errors(dx, dw, db, dy, x, mu, rs)
    assert all(e <= b for e, b in zip(exact, bound)), exact
    assert dx_ref <= 1.05 * ex_dx_ref + 1e-7, (dx_ref, ex_dx_ref)
    assert dw_ref <= 1.05 * ex_dw_ref + 1e-7, (dw_ref, ex_dw_ref)
    assert db_ref <= 1e-7, db_ref


@pytest.mark.parametrize("shape", [(262144, 2, 1), (16, 2, 32768)])
def test_batch_norm_grad_sums_in_double(shape):
    x, dy = data(shape, 44)
    _, sv = norm.batch_norm(x, eps=EPS)
    dx, dw, db = norm.batch_norm_backward(dy, x, None, sv)
    check(dx, dw, db, dy, x, sv.mean, sv.rstd, (2e-7, 4e-5, 3e-8))
