"""The normalization R-operator's group sums (cpp/norm_rop.cpp, cuda/norm_rop.cu): in double.

Layer norm's row sums were float32 lane sums: a row of 65536 directions R{h} = 1000 + small had
m(R{h}) rounded thousands of times alike, R{y} 1.6e-5 off where torch's double backward is 4e-7.
Batch norm's column sums run by tiles of rows x columns whose partials are added in block order:
checked on shapes of several tiles and blocks, and for any thread count.
The reference is the array-generic formulation of ``optkern.nn.normalization`` in float64 on the
same float32 inputs (statistics from the float64 forward).
"""

import numpy as np
import pytest

import optkern
from optkern.nn import normalization as nz

EPS = 1e-5


def _problem(shape, offset, seed):
    rng = np.random.default_rng(seed)
    N, D = shape
    f = lambda a: np.asarray(a, np.float32)
    h = f(3.0 + rng.standard_normal(shape))
    g, b = f(1 + 0.1 * rng.standard_normal(D)), f(rng.standard_normal(D))
    vg, vb = f(rng.standard_normal(D)), f(rng.standard_normal(D))
    rh, dy, rdy = (f(offset + rng.standard_normal(shape)) for _ in range(3))
    return h, g, b, vg, vb, rh, dy, rdy


def _run(p, axis):
    h, g, b, vg, vb, rh, dy, rdy = p
    _, saved = nz.norm_forward(h, g, b, EPS, axis)
    ry, rs = nz.norm_rop_forward(rh, g, vg, vb, saved, axis)
    return (ry, *rs, *nz.norm_rop_backward(dy, rdy, g, vg, saved, rs, axis))


def _reference(p, axis):
    # x̂ from the float32 forward's statistics: the rounding of those (an offset of ~1e-7 in Σ x̂,
    # times directions of 1000) is the forward's, not the R-operator's. Groups with |mean| r > 1 (h =
    # 3 + N(0, 1)) are normalized around the mean and its low part lo (rules::mean_lo): x̂ = ((h -
    # mean) - lo) r, rounded to float32 as the forward's (d - lo rounds alike for every d of one
    # binade, where lo is a fixed fraction of its ulp: Σ x̂ then sits ~1e-8 per element off 0, times
    # the directions' 1000 a bias in m(x̂ R{h}) of the forward's x̂, not of the R-operator).
    _, ns = nz.norm_forward(p[0], p[1], p[2], EPS, axis)
    shape = (1, -1) if axis == 0 else (-1, 1)
    mean, rstd = (np.asarray(a).reshape(shape) for a in (ns.native_saved.mean, ns.native_saved.rstd))
    far = np.abs(mean.astype(np.float64)) * rstd > 1
    lo = np.where(far, p[0].astype(np.float64).mean(axis=axis, keepdims=True) - mean, 0).astype(np.float32)
    xhat = (((p[0] - mean) - lo) * rstd).astype(np.float64)
    h, g, b, vg, vb, rh, dy, rdy = (a.astype(np.float64) for a in p)
    rstd = rstd.astype(np.float64)
    saved = nz.Saved(h, None, xhat=xhat, rstd=rstd, axis=axis)
    ry, rs = nz.norm_rop_forward(rh, g, vg, vb, saved, axis)
    return (ry, *rs, *nz.norm_rop_backward(dy, rdy, g, vg, saved, rs, axis))


NAMES = ("R{y}", "R{x̂}", "m(x̂ R{h})", "dh", "R{dh}", "R{dγ}", "R{dβ}")


def _errors(got, want):
    return {k: float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-30)) for k, g, w in zip(NAMES, got, want)}


@pytest.mark.parametrize("offset", [100.0, 1000.0])
def test_layer_norm_long_row_with_offset_directions(offset):
    # float32 sums at offset 1000: R{y} 7e-6, R{x̂} 1e-5, R{dh} 6e-5, R{dγ} 1e-5 off (in double:
    # 3e-7, 6e-7, 2e-6, 5e-7). m(x̂ R{h}) ~ 0.004 is a sum of terms ~±1000 |x̂|, each rounded in
    # float32 (~5e-5 of it): 2e-3 off in float sums, 2e-4 in double
    p = _problem((1, 65536), offset, seed=1)
    err = _errors(_run(p, 1), _reference(p, 1))
    for k, e in err.items():
        assert e < {"m(x̂ R{h})": 1e-3, "R{dh}": 1e-5}.get(k, 2e-6), (k, err)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shape", [(600, 530), (257, 1), (2, 700), (3, 257)])
def test_many_tiles_match_float64(shape, axis):
    p = _problem(shape, 0.0, seed=shape[0] + shape[1] + axis)
    err = _errors(_run(p, axis), _reference(p, axis))
    for k, e in err.items():
        assert e < 2e-5, (k, err)


def test_tiles_bitwise_for_any_thread_count():
    p = _problem((600, 530), 1.0, seed=3)
    before = optkern.get_num_threads()
    try:
        for axis in (0, 1):
            optkern.set_num_threads(1)
            one = _run(p, axis)
            optkern.set_num_threads(2)
            two = _run(p, axis)
            for a, b in zip(one, two):
                assert np.array_equal(a, b)
    finally:
        optkern.set_num_threads(before)
