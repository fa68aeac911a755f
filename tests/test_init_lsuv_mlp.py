"""LSUV on the built-in optkern.nn.MLP (flat parameter buffer)."""

import numpy as np
import pytest

from optkern import init as I

nn = pytest.importorskip("optkern.nn", reason="optkern.nn (built-in MLP) is not on this branch yet")


@pytest.mark.parametrize("norm, act", [(None, "tanh"), (None, "relu"), ("layer", "tanh")])
def test_lsuv_mlp_unit_variance_per_layer(norm, act):
    mlp = nn.MLP([20, 48, 32, 10], activation=act, norm=norm, dtype=np.float64)
    params = mlp.init_params(seed=0) * 4.0  # badly scaled start
    x = np.random.default_rng(1).standard_normal((200, 20)) * 3
    variances = I.lsuv_mlp_(mlp, params, x, tol=0.01, rng=2)
    assert len(variances) == 3 and all(abs(v - 1) < 0.01 for v in variances)
    views = mlp.views(params)
    # independent check: recompute layer outputs from the views by hand (no-norm case) / from predict
    out = mlp.predict(params, x)
    assert abs(out.var() - 1) < 0.01
    assert all(np.all(v["b"] == 0) for v in views)
    if norm is None:
        h = x
        for _i, v in enumerate(views):
            z = h @ v["W"].T + v["b"]
            assert abs(z.var() - 1) < 0.01
            h = np.tanh(z) if act == "tanh" else np.maximum(z, 0)
