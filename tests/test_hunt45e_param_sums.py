"""Hunt 45e: the CPU's parameter gradients dγ = Σ dy x̂ and dβ = Σ dy of the row normalizations
(group / layer norm: cpp/norm_rows.cpp) and the redo of a non-finite one with dy scaled (batch, group
and layer norm: cpp/norm_cpu.hpp's param_sums_scaled; the GPU's block_param_sums_scaled in
cuda/norm_scaled.cuh likewise) summed in double and rounded to float32 once, as batch norm's plain
sums (tests/test_hunt44h_bn_grad_sums.py).

Before: the row norms' per-block partials were float32 (a block's runs or rows, then the blocks): group
norm's dβ of dy = 1 + 0.01 N(0, 1) was 1 ulp off the exactly summed float32 terms in most channels,
layer norm's up to 5 (now: runs' double sums, rows' float32 blocks of 8 rows, added in double); the
redo summed a channel's scaled terms in float32: dγ where the plain products overflow (dy ~ 1e37, an
x̂ of 100) came out many ulps off.
"""

import numpy as np
import pytest

from optkern import norm
from optkern.norm import functional as F
from ulps import ulps_in_f32

f32, f64 = np.float32, np.float64


def test_group_norm_dbeta_is_the_rounded_exact_sum():
    rng = np.random.default_rng(45)
    x = rng.standard_normal((16, 8, 4096)).astype(f32)
    dy = (1 + 0.01 * rng.standard_normal(x.shape)).astype(f32)
    _, sv = F.group_norm(x, 4, None, None, 1e-5)
    _, _, db = F.group_norm_backward(dy, x, None, sv)
    exact = dy.sum((0, 2), dtype=f64).astype(f32)
    assert ulps_in_f32(db, exact).max() == 0, ulps_in_f32(db, exact)


def test_layer_norm_param_grads_are_the_rounded_exact_sums():
    rng = np.random.default_rng(46)
    x = rng.standard_normal((4096, 64)).astype(f32)
    dy = (1 + 0.01 * rng.standard_normal(x.shape)).astype(f32)
    _, sv = F.layer_norm(x, (64,), None, None, 1e-5)
    _, dw, db = F.layer_norm_backward(dy, x, None, sv)
    xh = ((x - sv.mean[:, None]) * sv.rstd[:, None]).astype(f32)
    assert ulps_in_f32(db, dy.sum(0, dtype=f64).astype(f32)).max() == 0
    # Σ dy x̂ cancels (Σ x̂ = 0 down each column): what the float blocks of 8 rows leave is measured
    # against Σ |dy x̂| (before: 1.5e-8, float32 partials of 64 rows, then of the 64 blocks; now 3.4e-9)
    t = (dy * xh).astype(f32)
    assert (np.abs(dw - t.sum(0, dtype=f64)) / np.abs(t).sum(0, dtype=f64)).max() <= 5e-9


def _overflowing_products(n, seed):
    """x with an outlier (x̂ ~ 100) and dy ~ 1e37: dy x̂ overflows float32, Σ dy x̂ does not."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(f32)
    x[7] = 100
    dy = (1e37 * (1 + 0.01 * rng.standard_normal(n))).astype(f32)
    return x, dy


def _scaled_ref(dy, xh):
    """Σ dy x̂ as the redo forms its terms (dy 2^-a, a from max |dy|; products rounded to float32),
    summed exactly, scaled back and rounded once."""
    a = np.frexp(np.abs(dy).max(-1, keepdims=True))[1] - 1
    d = np.ldexp(dy, -a).astype(f32)
    return np.ldexp((d * xh).astype(f32).sum(-1, dtype=f64, keepdims=True), a)[..., 0].astype(f32)


@pytest.mark.parametrize("kind", ["batch", "group"])
def test_scaled_redo_of_dgamma_sums_in_double(kind):
    n = 16384
    x, dy = _overflowing_products(2 * n, 47)
    if kind == "batch":  # (N, C) = (n, 2)
        x, dy = x.reshape(2, n).T.copy(), dy.reshape(2, n).T.copy()
        _, sv = norm.batch_norm(x, eps=1e-5)
        _, dw, _ = norm.batch_norm_backward(dy, x, None, sv)
        xh, dyc = ((x - sv.mean) * sv.rstd).astype(f32).T, dy.T
    else:  # one sample of two channels of n, one group
        x, dy = x.reshape(1, 2, n), dy.reshape(1, 2, n)
        _, sv = F.group_norm(x, 1, None, None, 1e-5)
        _, dw, _ = F.group_norm_backward(dy, x, None, sv)
        xh, dyc = ((x[0] - sv.mean[0, 0]) * sv.rstd[0, 0]).astype(f32), dy[0]
    with np.errstate(over="ignore"):
        assert not np.isfinite((dyc * xh).astype(f32)).all()  # (the plain sum overflows)
    ref = _scaled_ref(dyc, xh)
    assert np.isfinite(ref).all() and np.isfinite(dw).all(), (dw, ref)
    assert ulps_in_f32(dw, ref).max() == 0, (dw, ref, ulps_in_f32(dw, ref))
