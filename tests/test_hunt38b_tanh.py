"""tanh's derivatives (rules::activation, shared by the CPU and the GPU): ``f' = 1 - f^2`` from the
rounded ``f`` cancels as |z| grows -- float32 1.8e-5 relative off at z = -3, 0.4 at z = 6, exactly 0
(the true value ~1e-7) past |z| ~ 8.3, and float64 alike (1e7 ulps at |z| = 8). Now taken from the
pre-activation: ``f' = 4 e / (1 + e)^2``, ``e = exp(-2|z|)``, a few ulps everywhere it is normal;
``f'' = -2 f f'`` follows. Checked against float64 / mpmath references, and through the MLP's
backward and R-operator (Hessian-vector product) paths against a float64 model."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from optkern.nn import MLP
from optkern.nn.activations import activation


def _ref(z) -> tuple[np.ndarray, np.ndarray]:
    """(sech^2 z, -2 tanh z sech^2 z) to float64 accuracy (mpmath at 30 digits)."""
    mpmath.mp.dps = 30
    d1 = np.array([float(mpmath.sech(mpmath.mpf(float(v))) ** 2) for v in z])
    d2 = np.array([float(-2 * mpmath.tanh(mpmath.mpf(float(v))) * mpmath.sech(mpmath.mpf(float(v))) ** 2) for v in z])
    return d1, d2


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_tanh_derivatives_within_a_few_ulps(dt):
    fi = np.finfo(dt)
    z = np.concatenate([np.linspace(-40, 40, 4001), [-3.0, 3.0, -1e-30, 1e-30, 0.5]]).astype(dt)
    _, d1, d2 = activation("tanh", z, order=2)
    w1, w2 = _ref(z)
    for got, want in ((d1, w1), (d2, w2)):
        normal = np.abs(want) >= fi.tiny
        err = np.abs(got.astype(np.float64) - want)[normal] / np.abs(want)[normal]
        assert err.max() <= 8 * fi.eps, (dt, float(err.max() / fi.eps), float(z[normal][np.argmax(err)]))
        assert np.all(np.abs(got[~normal]) <= 2 * fi.tiny)  # (underflowed: at most a subnormal)


def test_tanh_derivative_extremes():
    for dt in (np.float32, np.float64):
        z = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, 1e4, -1e4], dt)
        f, d1, d2 = activation("tanh", z, order=2)
        np.testing.assert_array_equal(f[:2], [-1, 1])
        assert np.isnan(f[2]) and np.isnan(d1[2]) and np.isnan(d2[2])
        np.testing.assert_array_equal(d1[[0, 1, 3, 4, 5, 6]], [0, 0, 1, 1, 0, 0])
        np.testing.assert_array_equal(d2[[0, 1, 3, 4, 5, 6]], [0, 0, 0, 0, 0, 0])


def _one_unit(dt, x):
    """A 1 -> 1 -> 1 tanh MLP with W1 = 1, b1 = 0, W2 = 1, b2 = 0 (the hidden pre-activation is x
    itself, exactly), MSE loss, one row; (model, params)."""
    m = MLP([1, 1, 1], activation="tanh", loss="mse", dtype=dt)
    p = np.zeros(m.num_params, dt)
    v = m.views(p)
    v[0]["W"][...] = 1
    v[1]["W"][...] = 1
    return m, p


@pytest.mark.parametrize("x", [-3.0, -4.5, 2.75, -6.0, 7.5])
def test_mlp_backward_and_hvp_through_saturated_tanh(x):
    xs, ys = np.array([[x]]), np.array([[0.25]])
    got, want = {}, {}
    for dt, into in ((np.float32, got), (np.float64, want)):
        m, p = _one_unit(dt, x)
        into["g"] = m.loss_and_grad(p, xs.astype(dt), ys.astype(dt))[1].astype(np.float64)
        v = np.array([1.0, 0.5, -0.25, 0.75], dt)
        into["hv"] = m.hvp(p, xs.astype(dt), ys.astype(dt), v).astype(np.float64)
    for k in ("g", "hv"):
        rel = np.abs(got[k] - want[k]) / np.abs(want[k])
        assert rel.max() <= 2e-6, (k, x, rel)
