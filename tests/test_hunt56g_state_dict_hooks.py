"""``register_state_dict_post_hook`` on the optkern.torch optimizers as torch.optim runs it: the hook
sees the state dict ``state_dict()`` returns (plain per-param dicts, a low-precision step's seed
included), and what it returns is what ``state_dict()`` returns.

Before: the post-hooks ran inside torch's ``state_dict`` and the result was then rebuilt, so a hook
returning a dict without ``'state'`` (wrapping the checkpoint, or keeping only the groups) raised
KeyError, and a hook saving what it was shown saved the optimizer's tracked per-param dicts, which
``torch.load(weights_only=True)`` refuses, and no stochastic-rounding seed."""

import io

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

nn = torch.nn

MAKERS = {
    "SGD": lambda ps, m: m.SGD(ps, lr=0.1, momentum=0.9),
    "Adam": lambda ps, m: m.Adam(ps, lr=0.01),
    "RMSprop": lambda ps, m: m.RMSprop(ps, lr=0.01, centered=True),
}


def stepped(make, mod, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    model = nn.Linear(7, 3).to(dtype)
    opt = make(model.parameters(), mod, **kw) if kw else make(model.parameters(), mod)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 7).to(dtype)).float().pow(2).sum().backward()
        opt.step()
    return opt


def weights_only_round_trip(sd):
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("mod", [torch.optim, ot], ids=["torch", "optkern"])
def test_post_hook_result_is_returned(name, mod):
    opt = stepped(MAKERS[name], mod)
    opt.register_state_dict_post_hook(lambda o, sd: {"optimizer": sd, "version": 2})
    out = opt.state_dict()
    assert sorted(out) == ["optimizer", "version"]
    assert sorted(out["optimizer"]["state"]) == [0, 1]
    opt2 = stepped(MAKERS[name], mod)
    opt2.load_state_dict(out["optimizer"])


@pytest.mark.parametrize("mod", [torch.optim, ot], ids=["torch", "optkern"])
def test_post_hook_may_drop_the_state(mod):
    opt = stepped(MAKERS["Adam"], mod)
    opt.register_state_dict_post_hook(lambda o, sd: {"param_groups": sd["param_groups"]})
    assert list(opt.state_dict()) == ["param_groups"]


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("mod", [torch.optim, ot], ids=["torch", "optkern"])
def test_post_hook_sees_what_is_returned(name, mod):
    opt = stepped(MAKERS[name], mod)
    seen = []
    opt.register_state_dict_post_hook(lambda o, sd: seen.append(sd))
    out = opt.state_dict()
    assert seen[0] is out
    back = weights_only_round_trip(seen[0])  # (a hook that saves the checkpoint: torch.load's default)
    assert sorted(back["state"]) == [0, 1]


def test_post_hook_sees_the_stochastic_rounding_seed():
    make = lambda ps, m, **kw: m.Adam(ps, lr=0.01, **kw)
    opt = stepped(make, ot, torch.bfloat16, master_weights=True, stochastic_rounding=True, seed=7)
    seen = []
    opt.register_state_dict_post_hook(lambda o, sd: seen.append(sd))
    out = opt.state_dict()
    assert seen[0] is out
    entry = weights_only_round_trip(seen[0])["state"][0]
    assert entry.keys() == out["state"][0].keys()
    assert int(entry["seed"]) == 7  # (what a resumed run draws its rounding from)


def test_post_hook_edits_are_kept():
    opt = stepped(MAKERS["SGD"], ot)

    def tag(o, sd):
        sd["state"][0]["note"] = "kept"
        sd["extra"] = 1

    opt.register_state_dict_post_hook(tag)
    out = opt.state_dict()
    assert out["state"][0]["note"] == "kept" and out["extra"] == 1
