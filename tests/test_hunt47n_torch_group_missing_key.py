"""optkern.torch loading a checkpoint whose param group lacks a hyper-parameter (hunt 47n).

torch's loader replaces each group with the saved one (only ``params`` kept): a key the saved
group lacks is gone, unless the class's ``__setstate__`` fills it in (``maximize``, SGD's
``nesterov``, ...), and torch's next step fails on it with a KeyError. optkern.torch took the
constructor's value instead (a checkpoint without ``lr`` stepped on with another learning rate,
silently). Such a group is now refused at load, naming the key, before anything changes; the keys
torch's loader does without still load, as torch's loader fills them: with torch's defaults (an
optimizer made with maximize=True loading a group without ``maximize`` kept True where torch
steps with False). torch.optim is the oracle, key by key, made with other values than the defaults.
"""

from __future__ import annotations

import copy
import inspect

import pytest

torch = pytest.importorskip("torch")
okt = pytest.importorskip("optkern.torch")
from torch_ieee_sqrt import ieee_sqrt  # noqa: E402  (after torch's importorskip)

_NAMES = ("SGD", "Adam", "AdamW", "NAdam", "Adagrad", "RMSprop", "Adadelta")
_KW = {"SGD": {"momentum": 0.9}}
# not the defaults: what a key missing from the loaded group must not be taken from
_OTHER = {"maximize": True, "nesterov": True, "amsgrad": True, "decoupled_weight_decay": True, "centered": True}
# the group keys only one side's loaded group holds: optkern's own (SGD's momentum_form, RMSprop's
# nesterov) on ours (torch's implementation keywords and Adagrad's initial_accumulator_value load as
# torch's: test_hunt48b_torch_load_impl_keys)
_OURS_ONLY = {"momentum_form", "nesterov"}
_THEIRS_ONLY: set = set()


def _make(module, name: str, p):
    kw = dict(_KW.get(name, {"momentum": 0.9} if name == "RMSprop" else {}))
    cls = getattr(module, name)
    params = inspect.signature(getattr(torch.optim, name).__init__).parameters
    kw.update({k: v for k, v in _OTHER.items() if k in params})
    return cls([p], lr=0.2, **kw)


def _checkpoint(name: str) -> dict:
    p = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 4))
    opt = getattr(torch.optim, name)([p], lr=0.05, **_KW.get(name, {}))
    p.grad = torch.full((4,), 0.5)
    opt.step()
    return copy.deepcopy(opt.state_dict())


def _torch_steps_without(name: str, sd: dict):
    """torch's (group, stepped param) after loading ``sd``, or None where its step raises KeyError
    (torch's sqrt made IEEE's: ``torch_ieee_sqrt``, the one rounding the libraries do not share)."""
    p = torch.nn.Parameter(torch.zeros(4))
    opt = _make(torch.optim, name, p)
    try:
        opt.load_state_dict(copy.deepcopy(sd))
        p.grad = torch.ones(4)
        with ieee_sqrt():
            opt.step()
    except KeyError:
        return None
    return opt.param_groups[0], p


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


@pytest.mark.parametrize("name", _NAMES)
def test_a_group_missing_a_key_loads_as_torch_steps_it(name):
    full = _checkpoint(name)
    for key in [k for k in full["param_groups"][0] if k != "params"]:
        sd = copy.deepcopy(full)
        del sd["param_groups"][0][key]
        p = torch.nn.Parameter(torch.zeros(4))
        opt = _make(okt, name, p)
        before = copy.deepcopy(opt.state_dict())
        stepped = _torch_steps_without(name, sd)
        if stepped is not None:
            theirs, their_p = stepped
            opt.load_state_dict(sd)
            p.grad = torch.ones(4)
            opt.step()
            ours = opt.param_groups[0]
            assert torch.equal(p, their_p), (key, p, their_p)
            assert set(ours) - set(theirs) <= _OURS_ONLY, (key, set(ours) - set(theirs))
            assert set(theirs) - set(ours) <= _THEIRS_ONLY, (key, set(theirs) - set(ours))
            for k in set(ours) & set(theirs) - {"params"}:
                assert _same(ours[k], theirs[k]), (key, k, ours[k], theirs[k])
        else:
            with pytest.raises(ValueError, match=rf"state_dict\['param_groups'\]\[0\]: missing {key!r}"):
                opt.load_state_dict(sd)
            assert _same(opt.state_dict(), before), key  # (refused before anything changed)
