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


@pytest.mark.parametrize("two_groups", [False, True])
def test_none_grads_are_skipped_as_the_optimizer_skips_them(two_groups):
    """A None grad (torch's None .grad) is neither checked nor unscaled: the step through the
    scaler equals the optimizer's own step on the unscaled grads, the skipped param untouched."""
    rng = np.random.default_rng(105)
    sizes = [5, 7, 3]
    p0 = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    gs = grads_of(rng, sizes, 1.0)
    a, b = [p.copy() for p in p0], [p.copy() for p in p0]
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.5}] if two_groups else ps
    opt_a, opt_b = optkern.optim.Adam(groups(a), lr=0.1), optkern.optim.Adam(groups(b), lr=0.1)
    s = GradScaler(init_scale=8.0)
    for _ in range(3):
        scaled = [g * np.float32(8.0) for g in gs]
        s.step(opt_a, [scaled[0], None, scaled[2]])
        s.update()
        opt_b.step([gs[0], None, gs[2]])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[1], p0[1])
    assert 1 not in opt_a.state_dict()["state"]


class _Plain:
    """Not an optkern optimizer: GradScaler knows it by its param_groups only."""

    def __init__(self, params):
        self.param_groups = [{"params": params}]
        self.seen = None

    def step(self, grads):
        self.seen = grads


def test_none_grads_reach_another_optimizer_unscaled_around_them():
    params = [np.zeros(3, np.float32), np.zeros(2, np.float32)]
    opt, s = _Plain(params), GradScaler(init_scale=4.0)
    g = np.full(3, 8.0, np.float32)
    s.step(opt, [g, None])
    assert opt.seen[1] is None
    np.testing.assert_array_equal(g, 2.0)


def test_the_step_after_the_scalers_check_still_checks_other_arrays():
    """GradScaler.step checks an optkern optimizer's grads once (its step does not repeat the
    checks for those very arrays); a later step with other arrays is checked as always."""
    params = [np.zeros(3, np.float32), np.zeros((2, 2), np.float32)]
    opt, s = optkern.optim.SGD(params, lr=0.1), GradScaler(init_scale=2.0)
    s.step(opt, [np.ones(3, np.float32), np.ones((2, 2), np.float32)])
    s.update()
    assert opt._amp_checked is None  # (cleared after the step)
    with pytest.raises(ValueError, match=r"grads\[1\]: expected shape \(2, 2\), got \(4,\)"):
        opt.step([np.ones(3, np.float32), np.ones(4, np.float32)])
    with pytest.raises(ValueError, match=r"grads\[1\]: expected shape \(2, 2\), got \(4,\)"):
        s.step(opt, [np.ones(3, np.float32), np.ones(4, np.float32)])
    np.testing.assert_array_equal(params[0], np.float32(-0.1) * np.float32(0.5))  # (1 / scale 2)
