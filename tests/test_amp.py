"""optkern.amp.GradScaler against torch.amp.GradScaler and its own rules."""

import numpy as np
import pytest

import optkern
from optkern.amp import GradScaler


def grads_of(rng, sizes, scale):
    return [(rng.standard_normal(n) * scale).astype(np.float32) for n in sizes]


def test_unscale_is_fused_division_and_detects_non_finite():
    rng = np.random.default_rng(101)
    sizes = [0, 1, 7, 1023, 70_001]
    s = GradScaler(init_scale=1024.0)
    gs = grads_of(rng, sizes, 1024.0)
    ref = [g.astype(np.float64) / 1024.0 for g in gs]
    assert s.unscale_(gs) is False
    for g, r in zip(gs, ref):
        np.testing.assert_array_equal(g, r.astype(np.float32))  # power-of-two scale: exact
    for bad in (np.inf, -np.inf, np.nan):
        s = GradScaler(init_scale=8.0)
        gs = grads_of(rng, sizes, 1.0)
        gs[4][rng.integers(70_001)] = bad
        assert s.unscale_(gs) is True


@pytest.mark.parametrize("where", [0, 2, 4])
def test_non_finite_step_changes_nothing_and_backs_off(where):
    rng = np.random.default_rng(102)
    sizes = [3, 1023, 70_001]
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    opt = optkern.optim.Adam(params, lr=1e-2)
    s = GradScaler(init_scale=2.0**10, growth_interval=3)
    opt.step(grads_of(rng, sizes, 1.0))  # state exists
    before = [p.copy() for p in params]
    state_before = {
        k: [np.copy(v) for v in vs.values() if isinstance(v, np.ndarray)] for k, vs in opt.state_dict()["state"].items()
    }
    gs = grads_of(rng, sizes, 2.0**10)
    gs[where % 3][0] = np.nan if where == 2 else np.inf
    assert s.step(opt, gs) is None
    s.update()
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)
    after = {
        k: [np.copy(v) for v in vs.values() if isinstance(v, np.ndarray)] for k, vs in opt.state_dict()["state"].items()
    }
    for k, vals in state_before.items():
        for a, b in zip(after[k], vals):
            np.testing.assert_array_equal(a, b)
    assert s.get_scale() == 2.0**9


def test_scale_sequence_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(103)
    kw = {"init_scale": 2.0**8, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 3}
    ours = GradScaler(**kw)
    tp = torch.nn.Parameter(torch.zeros(5))
    topt = torch.optim.SGD([tp], lr=0.1)
    theirs = torch.amp.GradScaler("cpu", **kw)
    p = np.zeros(5, np.float32)
    opt = optkern.optim.SGD([p], lr=0.1)
    pattern = rng.random(40) < 0.25
    for bad in pattern:
        g = rng.standard_normal(5).astype(np.float32)
        if bad:
            g[rng.integers(5)] = np.inf
        gs = g * np.float32(ours.get_scale())
        theirs.scale(torch.ones(()))  # torch creates its scale tensor lazily
        tp.grad = torch.tensor(g) * theirs.get_scale()
        theirs.step(topt)
        theirs.update()
        ours.step(opt, [gs])
        ours.update()
        assert ours.get_scale() == theirs.get_scale()
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-6, atol=1e-7)


def test_growth_after_interval_and_state_dict():
    s = GradScaler(init_scale=4.0, growth_interval=2)
    for expect in (4.0, 8.0, 8.0, 16.0):
        s.unscale_([np.ones(3, np.float32)])
        s.update()
        assert s.get_scale() == expect
    t = GradScaler()
    t.load_state_dict(s.state_dict())
    assert t.get_scale() == 16.0 and t.state_dict() == s.state_dict()


def test_bad_input_named():
    with pytest.raises(ValueError, match="init_scale"):
        GradScaler(init_scale=0)
    with pytest.raises(ValueError, match="growth_factor"):
        GradScaler(growth_factor=0.5)
    with pytest.raises(ValueError, match="backoff_factor"):
        GradScaler(backoff_factor=1.5)
    with pytest.raises(ValueError, match="growth_interval"):
        GradScaler(growth_interval=0)
    s = GradScaler()
    with pytest.raises(TypeError, match=r"grads\[0\]: expected float32"):
        s.unscale_([np.ones(3)])
    with pytest.raises(RuntimeError, match="update"):
        s.update()
