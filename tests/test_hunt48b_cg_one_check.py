"""hessian.cg reads the fused iteration's curvature once (hunt 48b).

With an operator that tells ``p.G p`` before forming ``G p`` (``from_mlp(kind="ggn")``), the step
is taken inside the product (``_cg_fused.iteration``: pAp finite, positive where CG stops at
negative curvature, alpha finite). cg's loop then read the same pAp by the same rules a second
time, an iteration that had already been taken. It now reads them only where the fused iteration
did not take the step (its r.r NaN), to say why: the exits stay as they were.
"""

import importlib

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP

cg_mod = importlib.import_module("optkern.hessian.cg")  # (the module: the package's ``cg`` is the function)


def _ggn(seed=0, dtype=np.float32):
    model = MLP([13, 11, 4], activation="tanh", dtype=dtype, loss="cross_entropy")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((48, 13)).astype(dtype)
    y = rng.integers(0, 4, 48)
    return hessian.from_mlp(model, model.init_params(seed), x, y, kind="ggn")


def _counted(monkeypatch):
    calls = []
    real = cg_mod._step_size
    monkeypatch.setattr(cg_mod, "_step_size", lambda *a: calls.append(a) or real(*a))
    return calls


@pytest.mark.parametrize("damping", [0.0, 1e-2])
def test_a_fused_iteration_that_took_its_step_is_not_read_again(monkeypatch, damping):
    G = _ggn()
    b = np.random.default_rng(3).standard_normal(G.shape[0]).astype(np.float32)
    calls = _counted(monkeypatch)
    res = hessian.cg(G, b, rtol=0.0, maxiter=10, damping=damping)
    assert res.iterations == 10 and calls == []
    U = _ggn()
    U._quad_then = None  # (the unfused iteration: read once each)
    ref = hessian.cg(U, b, rtol=0.0, maxiter=10, damping=damping)
    assert len(calls) == 10
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-3, atol=1e-4 * np.abs(ref.x).max())


def test_a_fused_iteration_that_did_not_take_its_step_is_read_for_why(monkeypatch):
    # (the exits themselves, against the unfused iteration: test_hunt47g_cg_fused)
    G = _ggn(dtype=np.float64)
    calls = _counted(monkeypatch)
    with pytest.raises(ValueError, match="^damping: 1e\\+308 makes the curvature"):  # (float64 overflow)
        hessian.cg(G, np.ones(G.shape[0]), maxiter=5, damping=1e308)
    assert calls == []  # (a curvature that is not finite: refused before any step is read)
    # negative curvature (a confidence penalty makes the "Gauss-Newton" indefinite): the step not
    # taken, read once, to stop there
    for seed in range(40):
        model = MLP([13, 11, 4], activation="tanh", dtype=np.float64, confidence_penalty=3.0)
        rng = np.random.default_rng(seed)
        x, y = rng.standard_normal((20, 13)), rng.integers(0, 4, 20)
        G = hessian.from_mlp(model, model.init_params(seed), x, y, kind="ggn")
        res = hessian.cg(G, rng.standard_normal(G.shape[0]), rtol=0.0, maxiter=60)
        if res.info == -1:
            break
    else:
        pytest.fail("no seed gave negative curvature")
    assert res.negative_curvature and len(calls) == 1
