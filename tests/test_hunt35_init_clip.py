"""Session 35 hunt in optkern.clip / optkern.init: arguments refused with a TypeError / ValueError
naming them (not a bare OverflowError) before anything is written, a negative ``total_norm``
(no norm is negative: it flipped every gradient's sign) refused, and a torch tensor's norm (what
torch.nn.utils.get_total_norm returns) taken by clip_grads_with_norm_ as clip_grad_norm_ takes
torch gradients."""

from __future__ import annotations

import numpy as np
import pytest

import optkern.clip as okclip
import optkern.init as okinit


def _grads():
    return [np.array([3.0, -4.0], np.float32), np.array([[1.0, 2.0]], np.float32)]


@pytest.mark.parametrize("arg", ["max_norm", "total_norm"])
def test_clip_grads_with_norm_huge_int_is_a_value_error_naming_it(arg):
    grads = _grads()
    before = [g.copy() for g in grads]
    kw = {"max_norm": 1.0, "total_norm": 5.0, arg: 10**400}
    with pytest.raises(ValueError, match=f"^{arg}: "):
        okclip.clip_grads_with_norm_(grads, **kw)
    assert all(np.array_equal(g, b) for g, b in zip(grads, before))


@pytest.mark.parametrize("total", [-1.0, -1e-300, np.float32(-2.0), np.array([-1.0]), np.array(-3.0, np.float32)])
def test_clip_grads_with_norm_refuses_a_negative_total_norm(total):
    # min(1, 1 / (-1 + 1e-6)) = -1: every gradient negated (an ascent step), silently
    grads = _grads()
    before = [g.copy() for g in grads]
    with pytest.raises(ValueError, match="^total_norm: must be >= 0"):
        okclip.clip_grads_with_norm_(grads, 1.0, total)
    assert all(np.array_equal(g, b) for g, b in zip(grads, before))


@pytest.mark.parametrize("total", [0.0, -0.0, 5.0, np.nan, np.inf, np.array([np.nan])])
def test_clip_grads_with_norm_still_takes_zero_nan_and_inf(total):
    grads = _grads()
    okclip.clip_grads_with_norm_(grads, 1.0, total)  # (NaN / inf: torch's NaN or zeroed grads)


def test_clip_grads_with_norm_takes_a_torch_norm_like_torch():
    torch = pytest.importorskip("torch")
    values = _grads()
    params = [torch.nn.Parameter(torch.zeros(v.shape)) for v in values]
    for p, v in zip(params, values):
        p.grad = torch.tensor(v.copy())
    total = torch.nn.utils.get_total_norm([p.grad for p in params])
    grads = [g.copy() for g in values]
    okclip.clip_grads_with_norm_(grads, 1.0, total)
    torch.nn.utils.clip_grads_with_norm_(params, 1.0, total)
    for g, p in zip(grads, params):
        np.testing.assert_array_equal(g, p.grad.numpy())
    tgrads = [torch.tensor(v.copy()) for v in values]  # torch gradients too, as clip_grad_norm_ takes them
    okclip.clip_grads_with_norm_(tgrads, 1.0, total)
    for g, p in zip(tgrads, params):
        np.testing.assert_array_equal(g.numpy(), p.grad.numpy())


def test_sparse_huge_int_sparsity_is_a_value_error_naming_it():
    w = np.ones((3, 3), np.float32)
    with pytest.raises(ValueError, match="^sparsity: "):
        okinit.sparse_(w, 10**400)
    assert (w == 1).all()


@pytest.mark.parametrize(
    ("fill", "shape", "strides"),
    [(okinit.eye_, (3, 3), (4, 4)), (okinit.dirac_, (2, 2, 3), (4, 4, 4))],
)
def test_eye_and_dirac_refuse_an_array_whose_elements_share_memory(fill, shape, strides):
    # the zeros and ones written one after another land on shared elements: eye_ gave
    # [[1, 0, 1], [0, 1, 0], [1, 0, 1]], no identity (torch's too); the random fills refuse these
    buf = np.full(16, 7.0, np.float32)
    w = np.lib.stride_tricks.as_strided(buf, shape, strides)
    with pytest.raises(ValueError, match="^w: .*overlapping"):
        fill(w)
    assert (buf == 7.0).all()


def test_eye_and_dirac_still_fill_plain_and_strided_views():
    w = np.full((4, 6), 5.0, np.float32)[:, ::2]
    np.testing.assert_array_equal(okinit.eye_(w), np.eye(4, 3, dtype=np.float32))
    d = okinit.dirac_(np.full((2, 2, 3), 5.0, np.float32))
    assert d.sum() == 2 and d[0, 0, 1] == 1 and d[1, 1, 1] == 1


def test_float16_uniform_draws_stay_below_the_upper_bound_as_torch():
    # the [0, 1) draws were made in float64 and rounded to float16: 1 - 2**-12 .. 1 became 1.0, and
    # U(a, b) reached b (270 in a million; torch's half uniform_ stays in [a, b))
    w = okinit.uniform_(np.empty(1_000_000, np.float16), 0.0, 1.0, rng=0)
    assert w.max() < 1.0 and w.min() >= 0.0
    w = okinit.uniform_(np.empty(1_000_000, np.float16), -1.0, 1.0, rng=0)
    assert w.max() < 1.0 and w.min() >= -1.0
    w = okinit.kaiming_uniform_(np.empty((1000, 1000), np.float16), rng=0)
    assert float(w.max()) < float(np.float16(np.sqrt(3.0) * np.sqrt(2.0) / np.sqrt(1000)))


def test_float32_uniform_draws_unchanged():
    w = okinit.uniform_(np.empty(1000, np.float32), -2.0, 3.0, rng=5)
    u = np.random.default_rng(5).random(1000, dtype=np.float32)
    np.testing.assert_array_equal(w, (u * np.float32(2.0) - np.float32(1.0)) * np.float32(2.5) + np.float32(0.5))
