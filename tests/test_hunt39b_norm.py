"""optkern.norm, the scaled fallback of the CPU statistics (39th hunt, b): a row or channel whose
plain statistics overflow (|x| past ~1.8e19 in float32, where x² does) or underflow below a tiny eps
(eps < 2**-100 with Σx² < 2**-96) is summed again scaled by 2**-e. That pass summed one float32
accumulator element by element, so a row of 65536 values of few distinct magnitudes rounded every
addition alike: y, rstd, the running variance and weight norm's ‖v‖ came out 2e-4 to 6e-4 off
(thousands of ulps), where the same data in the normal range, the GPU's tree sums, and torch (for
the tiny-eps rows, which it computes directly) are within a few ulps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optkern.norm as N

M = 65536  # (a row this long: every float32 addition of the old sequential sum rounded)

# (x, eps): ±c near float32's overflow of x² (the fallback for any eps), and ±c of normal squares
# whose sum is below 2**-96, with an eps below 2**-100 (the fallback for a tiny eps)
_CASES = {
    "overflow": (1.7e20, 1e-5),
    "tiny-eps": (1.7e-18, 1e-45),
}


def _signs(seed, shape):
    return np.where(np.random.default_rng(seed).random(shape) < 0.5, -1.0, 1.0)


def _data(case, shape, seed=0):
    c, eps = _CASES[case]
    x = np.float32(c) * _signs(seed, shape) * (1 + 0.25 * np.random.default_rng(seed + 1).random(shape))
    return x.astype(np.float32), eps


def _rel(a, ref):
    return float(np.max(np.abs(np.asarray(a, np.float64) - ref)) / np.max(np.abs(ref)))


def _eps32(eps):
    return float(np.float32(eps))


@pytest.mark.parametrize("case", sorted(_CASES))
def test_rms_and_layer_norm_of_long_extreme_rows_are_accurate(case):
    x, eps = _data(case, (2, M))
    x64 = x.astype(np.float64)
    ref_rms = x64 / np.sqrt((x64**2).mean(1, keepdims=True) + _eps32(eps))
    d = x64 - x64.mean(1, keepdims=True)
    ref_ln = d / np.sqrt((d**2).mean(1, keepdims=True) + _eps32(eps))
    y, s = N.rms_norm(x, M, eps=eps)
    assert _rel(y, ref_rms) < 1e-6
    y, s = N.layer_norm(x, M, eps=eps)
    assert _rel(y, ref_ln) < 1e-6
    # group norm (one group) and instance norm: the same row kernels, (N, C, S) layout
    y, _ = N.group_norm(x.reshape(2, 4, M // 4), 1, eps=eps)
    assert _rel(y.reshape(2, M), ref_ln) < 1e-6
    y, _ = N.instance_norm(x.reshape(2, 1, M), eps=eps)
    assert _rel(y.reshape(2, M), ref_ln) < 1e-6


def test_tiny_eps_rows_as_accurate_as_torch():
    # torch computes these rows directly (their squares are normal floats): within an ulp or so
    x, eps = _data("tiny-eps", (2, M))
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt((x64**2).mean(1, keepdims=True) + _eps32(eps))
    ours = _rel(N.rms_norm(x, M, eps=eps)[0], ref)
    theirs = _rel(torch.nn.functional.rms_norm(torch.from_numpy(x), (M,), eps=eps).numpy(), ref)
    assert ours <= max(4 * theirs, 3e-7), (ours, theirs)


@pytest.mark.parametrize("case", sorted(_CASES))
def test_batch_norm_channels_and_running_var_of_extreme_data_are_accurate(case):
    x, eps = _data(case, (M, 2))
    x64 = x.astype(np.float64)
    mean = x64.mean(0)
    var = ((x64 - mean) ** 2).mean(0)
    ref = (x64 - mean) / np.sqrt(var + _eps32(eps))
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    y, s = N.batch_norm(x, None, None, rm, rv, momentum=1.0, eps=eps)
    assert _rel(y, ref) < 1e-6
    assert np.max(np.abs(s.rstd - 1 / np.sqrt(var + _eps32(eps))) * np.sqrt(var)) < 1e-6
    if case == "tiny-eps":  # (the overflow case's variance is past float32's max: inf, as torch's)
        unbiased = var * M / (M - 1)
        assert np.max(np.abs(rv - unbiased) / unbiased) < 1e-6


def test_weight_norm_of_a_long_row_near_the_overflow_is_accurate():
    v, _ = _data("overflow", (2, M))
    v64 = v.astype(np.float64)
    ref = np.sqrt((v64**2).sum(1))
    w, s = N.weight_norm(v, np.ones(2, np.float32), 0)
    assert np.max(np.abs(s.norm - ref) / ref) < 1e-6
    assert _rel(w, v64 / ref[:, None]) < 1e-6


def test_weight_norm_of_a_long_row_of_subnormal_norm_is_accurate():
    # ‖v‖ subnormal: w from v 2**-b and ‖v‖ 2**-b (exact digits), whose Σ was one float32
    # accumulator too (w 1.3e-4 off for 65536 values ±1e-42; the GPU's is a double block sum)
    v = (np.float32(1e-42) * _signs(0, (2, M))).astype(np.float32)
    v64 = v.astype(np.float64)
    w, s = N.weight_norm(v, np.ones(2, np.float32), 0)
    assert _rel(w, v64 / np.sqrt((v64**2).sum(1, keepdims=True))) < 1e-6


@pytest.mark.parametrize("dw_scale", [1.0, 1e37])
def test_weight_norm_backward_of_a_subnormal_norm_row_is_accurate(dw_scale):
    # the backward's redo (rows of a subnormal ‖v‖, or dw near the max) summed s = Σ dw v and ‖v‖²
    # of the scaled row in float32 accumulators too: dg 1.3e-4 off
    rng = np.random.default_rng(3)
    v = (np.float32(1e-42) * _signs(0, (2, M))).astype(np.float32)
    dw = (np.float32(dw_scale) * (1 + 0.1 * rng.random((2, M)))).astype(np.float32)
    g = np.ones(2, np.float32)
    _, s = N.weight_norm(v, g, 0)
    dg, _ = N.weight_norm_backward(dw, v, g, s)
    v64, d = v.astype(np.float64), dw.astype(np.float64)
    ref = (d * v64).sum(1) / np.sqrt((v64**2).sum(1))
    assert np.max(np.abs(dg - ref) / np.abs(ref)) < 1e-6
