"""optkern.torch loading a torch checkpoint fills a saved group's keys as torch's loader does (hunt 48b).

torch's ``load_state_dict`` replaces each param group with the saved one and its class's
``__setstate__`` then fills what the saved group lacks: the implementation keywords ``foreach``,
``fused``, ``capturable``, ``differentiable`` among them (with its own values: SGD's ``fused`` is
False there, None in its signature). optkern.torch's loader left them out (a later step read the
constructor's instead: ``foreach=True`` refusing a tensor lr torch's loaded group takes), and it
added Adagrad's ``initial_accumulator_value`` to a saved group that has none (torch's step never
reads it: the group stays as saved). torch.optim is the oracle: its loaded groups, key by key.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
okt = pytest.importorskip("optkern.torch")
from torch_ieee_sqrt import ieee_sqrt  # noqa: E402  (after torch's importorskip)

_NAMES = ("SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam")
_IMPL = ("foreach", "fused", "capturable", "differentiable")
# optkern's own hyper-parameters, documented as filled from the defaults (torch has no such key)
_OWN = {"SGD": {"momentum_form"}, "RMSprop": {"nesterov"}}


def _checkpoint(name: str) -> dict:
    p = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 5))
    opt = getattr(torch.optim, name)([p], lr=0.05)
    p.grad = torch.full((5,), 0.5)
    opt.step()
    return copy.deepcopy(opt.state_dict())


def _loaded(module, name: str, sd: dict, **kw) -> dict:
    p = torch.nn.Parameter(torch.zeros(5))
    opt = getattr(module, name)([p], lr=0.2, **kw)
    opt.load_state_dict(copy.deepcopy(sd))
    return opt.state_dict()["param_groups"][0]


def _groups_agree(name: str, sd: dict, **kw) -> None:
    theirs = _loaded(torch.optim, name, sd, **kw)
    ours = _loaded(okt, name, sd, **kw)
    assert set(ours) - _OWN.get(name, set()) == set(theirs), set(ours) ^ set(theirs)
    for k, v in theirs.items():
        assert ours[k] == v, (k, ours[k], v)


@pytest.mark.parametrize("name", _NAMES)
def test_a_group_without_implementation_keys_loads_with_torchs(name):
    sd = _checkpoint(name)
    for k in _IMPL:
        sd["param_groups"][0].pop(k, None)
    _groups_agree(name, sd)
    _groups_agree(name, sd, foreach=True)  # (not the constructor's: torch's __setstate__ defaults)


@pytest.mark.parametrize("name", ("Adam", "AdamW"))
def test_a_loaded_group_without_foreach_takes_a_tensor_lr_as_torchs(name):
    # made with foreach=True (which refuses a tensor lr), loaded a group without foreach: torch's is
    # then None (its default choice, the for-loop on the CPU), and its step takes the tensor lr
    sd = _checkpoint(name)
    del sd["param_groups"][0]["foreach"]
    ps = [torch.nn.Parameter(torch.zeros(5)) for _ in range(2)]
    opts = [m.__dict__[name]([p], lr=0.2, foreach=True) for m, p in zip((torch.optim, okt), ps)]
    for opt, p in zip(opts, ps):
        opt.load_state_dict(copy.deepcopy(sd))
        opt.param_groups[0]["lr"] = torch.tensor(0.01)
        p.grad = torch.linspace(-2.0, 3.0, 5)
        with ieee_sqrt():
            opt.step()
    assert torch.equal(ps[0], ps[1])


@pytest.mark.parametrize("name", _NAMES)
def test_a_groups_own_implementation_keys_are_kept(name):
    sd = _checkpoint(name)
    group = sd["param_groups"][0]
    for k, v in (("foreach", True), ("fused", False)):
        if k in group:
            group[k] = v
    _groups_agree(name, sd)


def test_adagrad_group_without_initial_accumulator_value_stays_without():
    sd = _checkpoint("Adagrad")
    del sd["param_groups"][0]["initial_accumulator_value"]
    _groups_agree("Adagrad", sd, initial_accumulator_value=0.3)
    # and it steps as torch's (the state exists: the value is never read; torch's sqrt made IEEE's)
    pt, po = (torch.nn.Parameter(torch.zeros(5)) for _ in range(2))
    t = torch.optim.Adagrad([pt], lr=0.2, initial_accumulator_value=0.3)
    o = okt.Adagrad([po], lr=0.2, initial_accumulator_value=0.3)
    for opt, p in ((t, pt), (o, po)):
        opt.load_state_dict(copy.deepcopy(sd))
        for _ in range(3):
            p.grad = torch.linspace(-2.0, 3.0, 5)
            with ieee_sqrt():
                opt.step()
    assert torch.equal(pt, po)
    assert "initial_accumulator_value" not in o.state_dict()["param_groups"][0]


def test_adagrad_group_without_initial_accumulator_value_starts_new_state_at_the_constructors():
    # (a param without saved state: torch's step fails on it; ours makes it, from the constructor's value)
    p = torch.nn.Parameter(torch.zeros(3))
    o = okt.Adagrad([p], lr=0.2, initial_accumulator_value=0.3)
    sd = o.state_dict()
    del sd["param_groups"][0]["initial_accumulator_value"]
    sd["state"] = {}
    o.load_state_dict(sd)
    p.grad = torch.ones(3)
    o.step()
    assert torch.allclose(o.state[p]["sum"], torch.full((3,), 1.3))
