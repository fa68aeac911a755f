"""Hunt 53i: a grad laid out unlike its param that shares memory with a param or a state tensor of
the step is refused by name, nothing written, as torch refuses it.

Such a grad is read through a copy in its param's layout (``_relaid``); the copy hid the aliasing
from the step's overlap checks, and the step wrote the memory it read (before the re-layout work
it was refused for its layout, by name). The aliasing check now runs on the grads as given."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402
from torch_common import stepped_once  # noqa: E402

SHARES = r"\(aliasing arrays cannot be updated in place\)$"


def _snapshot(opt, ps):
    return [p.detach().clone() for p in ps], {
        id(p): {k: v.clone() for k, v in opt.state[p].items() if isinstance(v, torch.Tensor)} for p in ps
    }


def _unchanged(opt, ps, snap):
    values, states = snap
    assert all(torch.equal(p.detach(), v) for p, v in zip(ps, values))
    for p in ps:
        assert set(opt.state[p]) >= set(states[id(p)])
        for k, v in states[id(p)].items():
            assert torch.equal(opt.state[p][k], v), k


def _torch_refuses(make):
    """The same case under torch.optim (for-loop): it raises (so refusing is torch's behaviour)."""
    with pytest.raises(RuntimeError, match="single memory location"):
        make(torch.optim, {"foreach": False})


def _refused_as_torch(make, pat):
    """torch refuses the case ``make`` builds; optkern refuses it by ``pat``, nothing written, the grads
    as given put back. ``make(mod, kw)`` steps under torch.optim and returns (optimizer, params) for optkern."""
    _torch_refuses(make)
    opt, ps = make(ot, {})
    grads = [p.grad for p in ps]
    snap = _snapshot(opt, ps)
    with pytest.raises(ValueError, match=pat + SHARES):
        opt.step()
    _unchanged(opt, ps, snap)
    assert all(p.grad is g for p, g in zip(ps, grads))
    return ps


def test_a_grad_that_is_its_param_transposed_is_refused():
    def make(mod, kw):
        torch.manual_seed(1)
        p = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
        opt = mod.SGD([p], lr=0.1, **kw)
        p.grad = p.detach().t()
        if mod is ot:
            return opt, [p]
        opt.step()

    pat = r"^param_groups\[0\]\['params'\]\[0\]\.grad shares memory with param_groups\[0\]\['params'\]\[0\] "
    ps = _refused_as_torch(make, pat)
    assert ps[0].grad.stride() == (1, 5)  # (the grad as given, put back)


def test_a_grad_that_is_another_params_memory_transposed_is_refused():
    torch.manual_seed(2)
    p, q = (torch.randn(7, 7, dtype=torch.float64, requires_grad=True) for _ in range(2))
    opt = ot.SGD([{"params": [p]}, {"params": [q], "lr": 0.05}], lr=0.1, momentum=0.9)
    q.grad = torch.randn(7, 7, dtype=torch.float64)
    p.grad = q.detach().t()
    snap = _snapshot(opt, [p, q])
    pat = r"^param_groups\[0\]\['params'\]\[0\]\.grad shares memory with param_groups\[1\]\['params'\]\[0\] "
    with pytest.raises(ValueError, match=pat + SHARES):
        opt.step()
    _unchanged(opt, [p, q], snap)


@pytest.mark.parametrize("name,key", [("Adam", "exp_avg"), ("Adam", "exp_avg_sq"), ("SGD", "momentum_buffer")])
def test_a_grad_that_is_a_state_tensor_transposed_is_refused(name, key):
    kw = {"momentum": 0.9} if name == "SGD" else {}

    def make(mod, extra):
        p, opt = stepped_once(getattr(mod, name), (6, 6), torch.float64, 3, lr=0.1, **kw, **extra)
        p.grad = opt.state[p][key].t()
        if mod is ot:
            return opt, [p]
        opt.step()

    p00 = r"param_groups\[0\]\['params'\]\[0\]"
    _refused_as_torch(make, rf"^{p00}\.grad shares memory with state\[{p00}\]\['{key}'\] ")


def test_a_channels_last_grad_over_a_state_tensor_is_refused():
    p, opt = stepped_once(ot.AdamW, (2, 3, 4, 5), torch.float32, 4, lr=0.1)
    m = opt.state[p]["exp_avg"]
    p.grad = m.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # (a copy: steps)
    opt.step()
    p.grad = torch.empty(0).set_(m.untyped_storage(), 0, m.shape, (60, 1, 15, 3))  # (m's memory, channels_last)
    snap = _snapshot(opt, [p])
    with pytest.raises(ValueError, match=r"\.grad shares memory with state\[.*\]\['exp_avg'\] " + SHARES):
        opt.step()
    _unchanged(opt, [p], snap)


def test_a_re_laid_grad_of_its_own_memory_still_steps_as_torch():
    """The check does not refuse what it should not: a transposed grad over memory of its own."""
    torch.manual_seed(5)
    p0 = torch.randn(9, 9, dtype=torch.float64)
    g = torch.randn(9, 9, dtype=torch.float64)
    out = []
    for mod, kw in ((torch.optim, {"foreach": False}), (ot, {})):
        p = p0.clone().requires_grad_()
        opt = mod.Adam([p], lr=0.1, **kw)
        for _ in range(2):
            p.grad = g.t().contiguous().t()
            opt.step()
        out.append(p.detach())
    torch.testing.assert_close(out[1], out[0], rtol=1e-12, atol=1e-12)
