"""optkern.torch: ``load_state_dict`` pre-hooks run before the state dict is checked.

torch's ``Optimizer.load_state_dict`` runs the ``register_load_state_dict_pre_hook`` hooks first and
loads what they return: a hook may migrate an old checkpoint (renamed keys, flattened moments, a
missing step). optkern.torch checked the state dict as given, before torch's loader ran the hooks,
and refused what the hook would have fixed. Now the hooks run first (once), then the checks and
the load of what they returned, then torch's post-hooks."""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")


def _old_checkpoint(mod, name="Adam"):
    """A stepped optimizer's state dict with its moments flattened and its step dropped."""
    p = torch.nn.Parameter(torch.ones(2, 3))
    p.grad = torch.full((2, 3), 0.5)
    opt = getattr(mod, name)([p], lr=0.1)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0] = {k: v.flatten() if v.dim() else v for k, v in sd["state"][0].items() if k != "step"}
    return sd


def _migrate(opt, sd):
    """The user's migration hook: moments back to their param's shape, the step count restored."""
    shape = opt.param_groups[0]["params"][0].shape
    state = {k: {n: v.reshape(shape) if v.dim() else v for n, v in e.items()} for k, e in sd["state"].items()}
    for e in state.values():
        e["step"] = torch.tensor(1.0)
    return {**sd, "state": state}


@pytest.mark.parametrize("name", ["Adam", "AdamW", "NAdam", "RMSprop", "Adadelta", "Adagrad"])
def test_pre_hook_migrates_the_checkpoint_before_the_checks(name):
    loaded = {}
    for mod in (torch.optim, ot):
        sd = _old_checkpoint(torch.optim, name)  # (each its own: torch's loader keeps the tensors it is given)
        p = torch.nn.Parameter(torch.ones(2, 3))
        opt = getattr(mod, name)([p], lr=0.1)
        calls = []
        opt.register_load_state_dict_pre_hook(lambda o, s, calls=calls: calls.append("pre") or _migrate(o, s))
        opt.register_load_state_dict_post_hook(lambda o, calls=calls: calls.append("post"))
        opt.load_state_dict(sd)
        assert calls == ["pre", "post"], mod.__name__  # (each hook once)
        p.grad = torch.full((2, 3), 0.25)
        opt.step()
        loaded[mod] = (p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items()})
    torch.testing.assert_close(loaded[ot][0], loaded[torch.optim][0], rtol=1e-6, atol=0)
    assert set(loaded[ot][1]) == set(loaded[torch.optim][1])


def test_pre_hook_result_is_still_checked_and_nothing_is_loaded_on_error():
    p = torch.nn.Parameter(torch.ones(2, 3))
    opt = ot.Adam([p], lr=0.1)
    opt.register_load_state_dict_pre_hook(lambda o, s: s)  # (returns the flat moments as they are)
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\]"):
        opt.load_state_dict(_old_checkpoint(torch.optim))
    assert len(opt.state) == 0
    p.grad = torch.ones(2, 3)
    opt.step()  # (the hooks are still registered, the optimizer usable)
    assert float(opt.state[p]["step"]) == 1.0
    assert len(opt._optimizer_load_state_dict_pre_hooks) == 1


def test_adagrad_norm_pre_hook_sees_the_state_dict_first():
    a = torch.nn.Parameter(torch.ones(3))
    opt = ot.AdagradNorm([a], lr=0.1)
    a.grad = torch.ones(3)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["b_sq"] = -1.0  # (a bad value the hook replaces)
    fresh = ot.AdagradNorm([a], lr=0.1)
    fresh.register_load_state_dict_pre_hook(
        lambda o, s: {**s, "state": {0: {**s["state"][0], "b_sq": opt.state[a]["b_sq"].clone()}}}
    )
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.state[a]["b_sq"], opt.state[a]["b_sq"])
