"""optkern.nn as a demanding user drives it: defects found by the hunt.

- relu mapped NaN to 0 (``z > 0 ? z : 0``): a NaN in ``x`` gave a finite loss and gradient where torch
  gives NaN, and relu(-0.0) was +0.0 (torch: -0.0). Now ``z < 0 ? 0 : z``.
- ``MLP(norm=..., norm_eps=1e-50)`` on a float32 model was accepted and refused only at the first
  loss, naming the normalization kernel's ``eps``; now refused at construction naming ``norm_eps``.
- ``MLP(loss="mse", label_smoothing=0.1)`` (or a confidence penalty) was silently ignored; now refused.
"""

import numpy as np
import pytest

from optkern import nn

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_propagates_nan_and_negative_zero_like_torch(dtype):
    z = np.array([np.nan, -0.0, 0.0, -1.5, 2.5, -np.inf, np.inf], dtype=dtype)
    a, d1, d2 = nn.activation("relu", z, order=2)
    ref = torch.relu(torch.from_numpy(z.copy())).numpy()
    np.testing.assert_array_equal(a, ref)  # (NaN where NaN)
    assert np.array_equal(np.signbit(a), np.signbit(ref))
    np.testing.assert_array_equal(d1[1:], [0, 0, 0, 1, 0, 1])  # (0 at the kink, as documented)
    np.testing.assert_array_equal(d2, 0)


@pytest.mark.parametrize("norm", [None, "layer"])
def test_mlp_relu_nan_input_gives_nan_loss(norm):
    m = nn.MLP([3, 4, 2], activation="relu", norm=norm, dtype=np.float64)
    p = m.init_params(0)
    x = np.random.default_rng(0).standard_normal((2, 3))
    x[0, 0] = np.nan
    y = np.array([0, 1])
    loss, grad = m.loss_and_grad(p, x, y)
    assert np.isnan(loss)
    assert np.isnan(m.predict(p, x)[0]).all()
    assert np.isfinite(m.predict(p, x)[1]).all()  # (the other row is untouched)
    P = m.views(torch.from_numpy(p))
    h = torch.from_numpy(x) @ P[0]["W"].T + P[0]["b"]
    if norm:
        h = torch.nn.functional.layer_norm(h, (4,), P[0]["gamma"], P[0]["beta"])
    h = torch.relu(h)
    assert torch.isnan(torch.nn.functional.cross_entropy(h @ P[1]["W"].T + P[1]["b"], torch.from_numpy(y)))


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("eps", [1e-50, 1e-46])
def test_norm_eps_rounding_to_zero_refused_at_construction(norm, eps):
    with pytest.raises(ValueError, match="norm_eps: .* rounds to 0 in float32"):
        nn.MLP([5, 7, 3], norm=norm, norm_eps=eps)
    m = nn.MLP([5, 7, 3], norm=norm, norm_eps=eps, dtype=np.float64)  # (nonzero in float64)
    x = np.random.default_rng(1).standard_normal((4, 5))
    assert np.isfinite(m.loss(m.init_params(), x, np.array([0, 1, 2, 1])))


def test_norm_eps_smallest_float32_still_accepted():
    m = nn.MLP([5, 7, 3], norm="batch", norm_eps=float(np.nextafter(np.float32(0), np.float32(1))))
    x = np.random.default_rng(2).standard_normal((4, 5)).astype(np.float32)
    assert np.isfinite(m.loss(m.init_params(), x, np.array([0, 1, 2, 1])))


@pytest.mark.parametrize("kw", [{"label_smoothing": 0.1}, {"confidence_penalty": 0.5}, {"confidence_penalty": -0.5}])
def test_mse_refuses_cross_entropy_hyper_parameters(kw):
    (name,) = kw
    with pytest.raises(ValueError, match=f"^{name}: applies to the cross-entropy loss only"):
        nn.MLP([5, 3], loss="mse", **kw)
    nn.MLP([5, 3], loss="mse", **{name: 0.0})  # (0: the default, accepted)
    nn.MLP([5, 3], loss="cross_entropy", **kw)
