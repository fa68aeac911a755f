"""A layer / RMS norm backward given a ``normalized_shape`` other than the forward's: the error names
``normalized_shape`` (with the saved statistics it disagrees with). The native size check blamed
``saved.mean`` / ``saved.inv_rms`` alone ("saved.mean: expected 4 elements, got 12"), statistics the
caller passed unchanged from the forward; nothing is written either way."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import norm


def _data(dtype=np.float32):
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, 3, 5)).astype(dtype), rng.standard_normal((4, 3, 5)).astype(dtype)


@pytest.mark.parametrize(
    "given, message",
    [
        ((3, 5), r"^normalized_shape, saved\.mean: \(3, 5\) leaves 4 rows"),
        ((4, 3, 5), r"^normalized_shape, saved\.mean: \(4, 3, 5\) leaves 1 rows"),
        (15, r"^normalized_shape: \(15,\) must be the trailing dimensions"),  # (not x's: as before)
    ],
)
def test_layer_norm_backward_names_normalized_shape(given, message):
    x, dy = _data()
    _, saved = norm.layer_norm(x, 5)
    out = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match=message):
        norm.layer_norm_backward(dy, x, None, saved, given, out=out)
    assert (out == 7.0).all()


@pytest.mark.parametrize("given", [(3, 5), (4, 3, 5)])
def test_rms_norm_backward_names_normalized_shape(given):
    x, dy = _data(np.float64)
    _, saved = norm.rms_norm(x, 5)
    with pytest.raises(ValueError, match=r"^normalized_shape, saved\.inv_rms: "):
        norm.rms_norm_backward(dy, x, None, saved, given)


def test_the_forwards_shape_given_or_not_gives_the_same_gradients():
    x, dy = _data()
    w = np.linspace(0.5, 1.5, 15, dtype=np.float32).reshape(3, 5)
    _, saved = norm.layer_norm(x, (3, 5), w)
    a = norm.layer_norm_backward(dy, x, w, saved)
    b = norm.layer_norm_backward(dy, x, w, saved, (3, 5))
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    _, saved = norm.rms_norm(x, (3, 5), w)
    for u, v in zip(norm.rms_norm_backward(dy, x, w, saved), norm.rms_norm_backward(dy, x, w, saved, (3, 5))):
        assert np.array_equal(u, v)


def test_saved_statistics_of_another_x_still_name_saved():
    x, dy = _data()
    _, saved = norm.layer_norm(x[:2].copy(), 5)  # (statistics of 2 x 3 rows, not 4 x 3)
    with pytest.raises(ValueError, match=r"^saved\.mean: expected 12 elements, got 6"):
        norm.layer_norm_backward(dy, x, None, saved)
    with pytest.raises(ValueError, match=r"^normalized_shape, saved\.mean: "):
        norm.layer_norm_backward(dy, x, None, saved, 5)  # (given: the two disagree, both named)
