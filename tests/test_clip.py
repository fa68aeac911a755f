"""Gradient clipping against the NumPy reference and torch.nn.utils."""

from __future__ import annotations

import math

import numpy as np
import pytest

import reference as R
from optkern.clip import clip_grad_norm_, clip_grad_value_

SHAPES = [(1,), (7,), (1000,), (100003,), (3, 4), (0,)]
NORMS = [1.0, 2.0, 3.0, 1.5, math.inf]


def _grads(seed, dtype, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(scale * rng.standard_normal(s)).astype(dtype) for s in SHAPES]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", NORMS)
@pytest.mark.parametrize("max_norm", [0.5, 1e9])
def test_clip_grad_norm_matches_reference(dtype, norm_type, max_norm):
    grads = _grads(NORMS.index(norm_type), dtype)
    want, want_norm = R.clip_by_norm(grads, max_norm, norm_type)
    total = clip_grad_norm_(grads, max_norm, norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(want_norm, rel=1e-12)  # float64 accumulation, whatever the dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    for g, w in zip(grads, want):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=0)
    if max_norm > total:
        for g, w in zip(grads, _grads(NORMS.index(norm_type), dtype)):
            assert np.array_equal(g, w)  # untouched


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
def test_clip_grad_norm_matches_torch(norm_type):
    torch = pytest.importorskip("torch")
    grads = [g for g in _grads(3, np.float64, scale=2.0) if g.size]  # torch's inf-norm rejects empty tensors
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for t, g in zip(tparams, grads):
        t.grad = torch.tensor(g)
    want = torch.nn.utils.clip_grad_norm_(tparams, 3.0, norm_type)
    got = clip_grad_norm_(grads, 3.0, norm_type)
    assert got == pytest.approx(float(want), rel=1e-12)
    for g, t in zip(grads, tparams):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12, atol=1e-300)


def test_clip_grad_value_matches_numpy_and_torch():
    grads = _grads(4, np.float32)
    expect = [np.clip(g, -0.3, 0.3) for g in grads]
    clip_grad_value_(grads, 0.3)
    for g, w in zip(grads, expect):
        assert np.array_equal(g, w)
    torch = pytest.importorskip("torch")
    grads = _grads(4, np.float64)
    t = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for a, g in zip(t, grads):
        a.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_value_(t, 0.25)
    clip_grad_value_(grads, 0.25)
    for g, a in zip(grads, t):
        assert np.array_equal(g, a.grad.numpy())


def test_nonfinite():
    grads = _grads(5, np.float32)
    grads[2][17] = np.nan
    before = [g.copy() for g in grads]
    with pytest.raises(ValueError, match=r"grads\[2\]: contains non-finite values"):
        clip_grad_norm_(grads, 1.0, error_if_nonfinite=True)
    for g, b in zip(grads, before):
        assert np.array_equal(g, b, equal_nan=True)
    grads[2][17] = np.inf
    with pytest.raises(ValueError, match=r"grads\[2\]: contains non-finite values"):
        clip_grad_norm_(grads, 1.0, norm_type="inf", error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match=r"grads\[2\]"):  # what torch raises: torch code catches it too
        clip_grad_norm_(grads, 1.0, error_if_nonfinite=True)
    grads[2][17] = np.nan
    assert math.isnan(clip_grad_norm_(grads, 1.0, norm_type=math.inf))
    assert math.isnan(clip_grad_norm_(grads, 1.0))  # like torch: the gradients become NaN
    assert np.isnan(grads[0]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("n", [1, 7, 1023, 70001])
def test_nonfinite_is_found_anywhere_and_named(n, where, value, dtype):
    """all_finite sees one bad element at either end of an array of any size (70001: several chunks)."""
    rng = np.random.default_rng(n)
    grads = [rng.standard_normal(m).astype(dtype) for m in (5, 1031)] + [rng.standard_normal(n).astype(dtype)]
    pos = 0 if where == "first" else n - 1
    grads[-1][pos] = value
    before = [g.copy() for g in grads]
    with pytest.raises(ValueError, match=r"^grads\[2\]: contains non-finite values"):
        clip_grad_norm_(grads, 0.5, error_if_nonfinite=True)
    for g, b in zip(grads, before):
        assert np.array_equal(g, b, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value_keeps_nan_and_clamps_infinities(dtype):
    rng = np.random.default_rng(14)
    grads = [rng.standard_normal(7).astype(dtype), rng.standard_normal(1023).astype(dtype)]
    g = grads[1]
    g[[0, 5, 1022]] = np.nan
    g[7], g[8] = np.inf, -np.inf
    want = [np.clip(a.astype(np.float64), -0.5, 0.5).astype(dtype) for a in grads]
    clip_grad_value_(grads, 0.5)
    assert g.dtype == dtype
    assert np.isnan(g[[0, 5, 1022]]).all()
    assert g[7] == 0.5 and g[8] == -0.5
    assert np.isnan(g).sum() == 3
    for a, w in zip(grads, want):
        np.testing.assert_array_equal(a, w)  # NaN == NaN here
    assert np.abs(g[~np.isnan(g)]).max() == 0.5


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_max_norm_and_clip_value_are_rejected(bad):
    g = np.random.default_rng(15).standard_normal(9)
    before = g.copy()
    with pytest.raises(ValueError, match=r"^max_norm: must be finite"):
        clip_grad_norm_([g], bad)
    with pytest.raises(ValueError, match=r"^clip_value: must be finite"):
        clip_grad_value_([g], bad)
    assert np.array_equal(g, before)


def test_clip_edge_cases_and_bad_input():
    assert clip_grad_norm_([], 1.0) == 0.0
    g = np.array([3.0, 4.0])
    assert clip_grad_norm_(g, 10.0) == 5.0  # a bare array is a one-element list
    with pytest.raises(ValueError, match=r"max_norm: must be in \[0.0, inf\), got -1.0"):
        clip_grad_norm_([g], -1.0)
    with pytest.raises(ValueError, match="norm_type: must be >= 1 or inf"):
        clip_grad_norm_([g], 1.0, norm_type=0.5)
    with pytest.raises(TypeError, match=r"^grads\[1\]: expected float64, got float32"):
        clip_grad_norm_([g, g.astype(np.float32)], 1.0)
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value_([g], -1.0)
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"^grads\[0\]: array is read-only"):
        clip_grad_value_([ro], 1.0)


def _misaligned(n):
    return np.frombuffer(np.zeros(8 * n + 1, np.uint8).data, dtype=np.float64, count=n, offset=1)


def _read_only(n):
    a = np.full(n, 10.0)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    "bad, exc, msg",
    [
        (lambda g: _read_only(5), ValueError, r"^grads\[2\]: array is read-only"),
        (lambda g: np.full((5, 2), 10.0)[:, 0], ValueError, r"^grads\[2\]: array must be C-contiguous"),
        (lambda g: _misaligned(5), ValueError, r"^grads\[2\]: array data is misaligned"),
        (lambda g: np.full(5, 10, np.int64), TypeError, r"^grads\[2\]: expected float64, got int64"),
        (lambda g: g[0][1:3], ValueError, r"^grads\[2\] shares memory with grads\[0\]"),
        (lambda g: g[1], ValueError, r"^grads\[\d\] shares memory with grads\[\d\]"),
    ],
)
@pytest.mark.parametrize("clip", ["norm", "norm_out", "value"])
def test_bad_grads_are_named_and_nothing_is_written(clip, bad, exc, msg):
    """Errors name ``grads[i]`` (not the native ``arrays``), before anything, ``out`` included, is written."""
    grads = [np.full(7, 10.0), np.full(3, -10.0)]
    grads.append(bad(grads))
    before = [g.copy() for g in grads]
    out = np.full(1, -1.0)
    with pytest.raises(exc, match=msg):
        if clip == "value":
            clip_grad_value_(grads, 1.0)
        else:
            clip_grad_norm_(grads, 1.0, out=out if clip == "norm_out" else None)
    for g, b in zip(grads, before):
        assert np.array_equal(g, b)
    assert out[0] == -1.0


def test_out_aliasing_grads_names_grads():
    g = np.full(4, 10.0)
    with pytest.raises(ValueError, match=r"^out shares memory with grads\[0\]"):
        clip_grad_norm_([g], 1.0, out=g[1:2])
    assert np.array_equal(g, np.full(4, 10.0))


def test_clip_grad_norm_writes_out_buffer():
    rng = np.random.default_rng(11)
    grads = [rng.standard_normal(n).astype(np.float32) for n in (7, 1023, 4099)]
    ref = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    out = np.full(1, np.nan)
    total = clip_grad_norm_(grads, 0.5, out=out)
    assert total == out[0]
    assert math.isclose(out[0], ref, rel_tol=1e-12)
    assert math.isclose(math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads)), 0.5, rel_tol=1e-5)


@pytest.mark.parametrize(
    "out, exc, msg",
    [
        (np.zeros(1, np.float32), ValueError, "float64"),
        (np.zeros(2), ValueError, "1-element"),
        ([0.0], TypeError, "out"),
    ],
)
def test_clip_grad_norm_rejects_bad_out(out, exc, msg):
    g = np.random.default_rng(12).standard_normal(9).astype(np.float32)
    before = g.copy()
    with pytest.raises(exc, match=msg):
        clip_grad_norm_([g], 0.1, out=out)
    assert np.array_equal(g, before)


def test_clip_grad_norm_rejects_read_only_out():
    g = np.random.default_rng(13).standard_normal(9).astype(np.float32)
    out = np.zeros(1)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        clip_grad_norm_([g], 0.1, out=out)


# ---- None entries: parameters without a gradient, skipped as torch skips a None .grad ------------


@pytest.mark.parametrize("norm_type", [1.0, 2.0, math.inf, 50.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_none_grads_are_skipped(norm_type, dtype):
    rng = np.random.default_rng(31)
    live = [(rng.standard_normal(n) * 3).astype(dtype) for n in (7, 1023, 1)]
    ref = [g.copy() for g in live]
    with_none = [None, live[0], live[1], None, live[2]]
    total = clip_grad_norm_(with_none, 1.0, norm_type)
    assert total == clip_grad_norm_(ref, 1.0, norm_type)
    for g, r in zip(live, ref):
        np.testing.assert_array_equal(g, r)
    clip_grad_value_(with_none, 0.1)
    clip_grad_value_(ref, 0.1)
    for g, r in zip(live, ref):
        np.testing.assert_array_equal(g, r)
    assert clip_grad_norm_([None, None], 1.0) == 0.0
    clip_grad_value_([None], 1.0)


@pytest.mark.parametrize(
    "bad, exc, msg",
    [
        (lambda g: _read_only(5), ValueError, r"^grads\[3\]: array is read-only"),
        (lambda g: np.full(5, 10, np.float32), TypeError, r"^grads\[3\]: expected float64, got float32"),
        (lambda g: g[1][1:3], ValueError, r"^grads\[3\] shares memory with grads\[1\]"),
        (lambda g: [1.0], TypeError, r"^grads\[3\]: expected a numpy"),
    ],
)
@pytest.mark.parametrize("clip", ["norm", "value"])
def test_errors_name_the_index_in_the_callers_list(clip, bad, exc, msg):
    """With None entries skipped, errors still name each array by its place in the caller's list."""
    grads = [None, np.full(7, 10.0), np.full(3, -10.0)]
    grads.append(bad(grads))
    before = [None if g is None else np.array(g, copy=True) for g in grads]
    with pytest.raises(exc, match=msg):
        (clip_grad_value_ if clip == "value" else clip_grad_norm_)(grads, 1.0)
    for g, b in zip(grads, before):
        assert (g is None and b is None) or np.array_equal(g, b)
