"""optkern.torch's clipping functions with their number arguments as 0-d NumPy arrays, as torch's
take them (it reads ``max_norm``, ``norm_type`` and ``clip_value`` with ``float()``): all four
refused them ("max_norm: expected a real number, got ndarray", "norm_type: expected a number or
'inf', got ndarray"). Results against torch.nn.utils' on the same grads (sizes 0, 1, 7, 1023):
the norms to a few float32 ulps (optkern sums in float64), the clipped grads to as many."""

from __future__ import annotations

import numpy as np
import pytest

import optkern.torch as okt

torch = pytest.importorskip("torch")
nnu = torch.nn.utils

SIZES = (0, 1, 7, 1023)


def _params(dtype):
    gen = torch.Generator().manual_seed(56)
    params = [torch.zeros(n, dtype=dtype, requires_grad=True) for n in SIZES]
    for p in params:
        p.grad = 3 * torch.randn(p.shape, generator=gen, dtype=dtype)
    return params


def _close(a, b):
    rtol = 8 * torch.finfo(a.dtype).eps
    torch.testing.assert_close(a, b, rtol=rtol, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("arr_dtype", [np.float64, np.float32, np.int64])
def test_clip_grad_norm_takes_0d_arrays(dtype, norm_type, arr_dtype):
    max_norm, order = np.array(1, arr_dtype), np.array(norm_type, np.float64)
    ours, theirs = _params(dtype), _params(dtype)
    n_ours = okt.clip_grad_norm_(ours, max_norm, order)
    n_theirs = nnu.clip_grad_norm_(theirs, max_norm, order)
    assert n_ours.dtype == n_theirs.dtype == dtype
    _close(n_ours, n_theirs)
    assert float(n_theirs) > 1.0  # (the grads were clipped)
    for a, b in zip(ours, theirs):
        _close(a.grad, b.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_clip_grad_value_takes_a_0d_array(dtype):
    ours, theirs = _params(dtype), _params(dtype)
    okt.clip_grad_value_(ours, np.array(0.5))
    nnu.clip_grad_value_(theirs, np.array(0.5))
    for a, b in zip(ours, theirs):
        assert torch.equal(a.grad, b.grad)
    assert max(float(p.grad.abs().max()) for p in ours if p.numel()) == 0.5


@pytest.mark.skipif(not hasattr(nnu, "get_total_norm"), reason="torch < 2.6 has no get_total_norm")
def test_get_total_norm_and_clip_grads_with_norm_take_0d_arrays():
    ours, theirs = _params(torch.float32), _params(torch.float32)
    t_ours = okt.get_total_norm([p.grad for p in ours], np.array(3.0))
    t_theirs = nnu.get_total_norm([p.grad for p in theirs], np.array(3.0))
    _close(t_ours, t_theirs)
    okt.clip_grads_with_norm_(ours, np.array(1.0), t_theirs)
    nnu.clip_grads_with_norm_(theirs, np.array(1.0), t_theirs)
    for a, b in zip(ours, theirs):
        _close(a.grad, b.grad)


@pytest.mark.parametrize(
    ("bad", "exc"),
    [
        (np.array([1.0, 2.0]), TypeError),
        (np.array(True), TypeError),
        (np.array(-1.0), ValueError),
        (np.array(np.nan), ValueError),
    ],
)
def test_bad_array_arguments_are_refused_by_name_before_anything_is_written(bad, exc):
    params = _params(torch.float32)
    before = [p.grad.clone() for p in params]
    with pytest.raises(exc, match="^max_norm: "):
        okt.clip_grad_norm_(params, bad)
    with pytest.raises(exc, match="^clip_value: "):
        okt.clip_grad_value_(params, bad)
    assert all(torch.equal(a, p.grad) for a, p in zip(before, params))
