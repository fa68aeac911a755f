"""optkern.torch's closure optimizers (LBFGS, NewtonCG) and SAM run torch's state-dict hooks, as
torch.optim.LBFGS and the reference SAM (a torch.optim.Optimizer whose state_dict and
load_state_dict are torch's) run them; NewtonCG takes torch's tensor lr and refuses a non-bool
``reuse_trial_gradient`` by name.

Before: LBFGS / NewtonCG ran no ``register_load_state_dict_pre_hook`` / ``post_hook`` (their
``load_state_dict`` is their own), so a migration hook's result was never loaded; SAM ran none of
its four state-dict hooks (its state dict is the base optimizer's). NewtonCG refused
``lr=torch.tensor(0.5)`` at construction (LBFGS and every step take it) and took
``reuse_trial_gradient="no"`` as True."""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")


def _lbfgs(mod):
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0, 0.5], dtype=torch.float64))
    opt = mod.LBFGS([w], max_iter=3)

    def closure():
        opt.zero_grad()
        loss = ((w - 1) ** 2).sum() + (w**4).sum()
        loss.backward()
        return loss

    return w, opt, closure


def _newton(lr=1.0, **kw):
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0, 0.5], dtype=torch.float64))

    def fn():
        return ((w - 1) ** 2).sum() + (w**4).sum()

    opt = ot.NewtonCG([w], lambda: ot.hessian_operator(fn, [w]), lr=lr, **kw)

    def closure():
        opt.zero_grad()
        loss = fn()
        loss.backward()
        return loss

    return w, opt, closure


def _record(opt, calls, migrate=None):
    opt.register_load_state_dict_pre_hook(lambda o, sd: calls.append("load_pre") or (migrate and migrate(sd)))
    opt.register_load_state_dict_post_hook(lambda o: calls.append("load_post"))
    opt.register_state_dict_pre_hook(lambda o: calls.append("sd_pre"))
    opt.register_state_dict_post_hook(lambda o, sd: calls.append("sd_post"))


@pytest.mark.parametrize("mod", [torch.optim, ot], ids=["torch", "optkern"])
def test_lbfgs_runs_the_load_hooks_as_torch(mod):
    w, opt, closure = _lbfgs(mod)
    opt.step(closure)
    sd = opt.state_dict()
    w2, again, closure2 = _lbfgs(mod)
    calls: list = []
    _record(again, calls)
    again.load_state_dict(sd)
    again.state_dict()
    assert calls == ["load_pre", "load_post", "sd_pre", "sd_post"]


def _migrate_lr(sd):
    """A migration hook: an old checkpoint's renamed key back to torch's name."""
    groups = [{("lr" if k == "learning_rate" else k): v for k, v in g.items()} for g in sd["param_groups"]]
    return {**sd, "param_groups": groups}


def test_lbfgs_pre_hook_result_is_what_loads():
    res = {}
    for mod in (torch.optim, ot):
        w, opt, closure = _lbfgs(mod)
        opt.step(closure)
        sd = opt.state_dict()
        old = {("learning_rate" if k == "lr" else k): v for k, v in sd["param_groups"][0].items()}
        sd = {**sd, "param_groups": [old]}
        sd["param_groups"][0]["learning_rate"] = 0.5
        w2, again, closure2 = _lbfgs(mod)
        calls: list = []
        _record(again, calls, _migrate_lr)
        again.load_state_dict(sd)
        assert again.param_groups[0]["lr"] == 0.5 and calls[:2] == ["load_pre", "load_post"]
        again.step(closure2)
        res[mod] = w2.detach().clone()
    torch.testing.assert_close(res[ot], res[torch.optim], rtol=1e-12, atol=1e-14)


def test_newton_cg_runs_the_load_hooks():
    w, opt, closure = _newton()
    opt.step(closure)
    sd = opt.state_dict()
    w2, again, _ = _newton()
    calls: list = []
    _record(again, calls)
    again.load_state_dict(sd)
    assert calls == ["load_pre", "load_post"]


def test_internal_loads_run_no_hooks():
    """(a state set by the user between steps, a deepcopy: torch runs no load hook there)"""
    import copy

    w, opt, closure = _lbfgs(ot)
    calls: list = []
    _record(opt, calls)
    opt.step(closure)
    opt.state.clear()
    opt.step(closure)
    copy.deepcopy(opt)
    assert calls == []


def test_sam_runs_its_own_state_dict_hooks():
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = ot.SAM([w], ot.SGD, lr=0.1, momentum=0.9)
    calls: list = []
    _record(opt, calls)
    (w**2).sum().backward()
    opt.step(lambda: (w**2).sum().backward())
    sd = opt.state_dict()
    assert calls == ["sd_pre", "sd_post"]
    opt.load_state_dict(sd)
    assert calls == ["sd_pre", "sd_post", "load_pre", "load_post"]


def test_sam_hooks_change_what_is_saved_and_loaded():
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = ot.SAM([w], ot.SGD, lr=0.1, momentum=0.9)
    opt.register_state_dict_post_hook(lambda o, sd: {**sd, "tag": "mine"})
    opt.register_load_state_dict_pre_hook(lambda o, sd: _migrate_lr({k: v for k, v in sd.items() if k != "tag"}))
    (w**2).sum().backward()
    opt.step(lambda: (w**2).sum().backward())
    sd = opt.state_dict()
    assert sd["tag"] == "mine"
    sd["param_groups"] = [{("learning_rate" if k == "lr" else k): v for k, v in g.items()} for g in sd["param_groups"]]
    sd["param_groups"][0]["learning_rate"] = 0.25
    opt.load_state_dict(sd)  # (without the hook: torch's loader would keep no lr; the SGD step KeyError)
    assert opt.param_groups[0]["lr"] == 0.25 and opt.base_optimizer.param_groups[0]["lr"] == 0.25


def test_newton_cg_tensor_lr_as_lbfgs():
    steps = {}
    for lr in (0.5, torch.tensor(0.5)):
        w, opt, closure = _newton(lr=lr)
        opt.step(closure)
        steps[isinstance(lr, torch.Tensor)] = w.detach().clone()
        assert opt.param_groups[0]["lr"] is lr
    assert torch.equal(steps[True], steps[False])
    with pytest.raises(ValueError, match="lr: a tensor lr must have one element"):
        _newton(lr=torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="lr: must be finite"):
        _newton(lr=torch.tensor(float("nan")))


@pytest.mark.parametrize("bad", ["no", 1, None])
def test_newton_cg_reuse_trial_gradient_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="reuse_trial_gradient: expected a bool"):
        _newton(reuse_trial_gradient=bad)


def test_sam_moves_bump_the_version_counter_as_the_reference():
    """first_step writes the params through views autograd cannot see: a backward through a graph
    that saved them raised with the reference (its p.add_) and went on silently here (gradients at
    the old params times the moved ones)."""
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = ot.SAM([w], ot.SGD, lr=0.1)
    (w**2).sum().backward()
    stale = (w**3).sum()  # (saves w)
    opt.first_step(zero_grad=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        stale.backward()
    again = (w**3).sum()
    opt.second_step(zero_grad=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        again.backward()


def test_sam_takes_a_tensor_rho():
    """The reference SAM takes any number for rho, a 0-d tensor included."""
    import optkern.torch as ot

    ps = [torch.nn.Parameter(torch.ones(3, dtype=torch.float64)) for _ in range(2)]
    a = ot.SAM([ps[0]], torch.optim.SGD, rho=torch.tensor(0.5), lr=0.1)
    b = ot.SAM([ps[1]], torch.optim.SGD, rho=0.5, lr=0.1)
    for p, opt in zip(ps, (a, b)):
        p.grad = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)
        opt.first_step()
    assert torch.equal(ps[0].detach(), ps[1].detach())
