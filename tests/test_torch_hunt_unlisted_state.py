"""optkern.torch's ``load_state_dict`` names a saved state entry that no parameter group lists,
before anything is loaded. It crashed with AttributeError ('int' object has no attribute
'is_complex') after torch's loader had run (torch keeps such an entry under its saved key and
never steps it: a checkpoint whose state keys became strings, through JSON say, loads in torch
with every moment silently dropped)."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402

torch.set_num_threads(1)


def _trained(name="Adam"):
    ps = [torch.randn(n, dtype=torch.float64, requires_grad=True) for n in (3, 2)]
    opt = getattr(ot, name)(ps, lr=0.1)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    return opt, ps


def _edits():
    def extra(sd):
        sd["state"][7] = {"step": torch.tensor(1.0)}

    def string_keys(sd):  # (as after a trip through JSON)
        sd["state"] = {str(k): v for k, v in sd["state"].items()}

    def renamed(sd):
        sd["param_groups"][0]["params"] = ["a", "b"]

    return {"extra": (extra, "7"), "string-keys": (string_keys, "'0'"), "renamed-ids": (renamed, "0")}


@pytest.mark.parametrize("name", ["SGD", "Adam", "NAdam", "AdagradNorm"])
@pytest.mark.parametrize("edit", list(_edits()))
def test_state_entry_no_group_lists_is_named_and_nothing_loaded(name, edit):
    f, key = _edits()[edit]
    src, _ = _trained(name)
    sd = copy.deepcopy(src.state_dict())
    if name == "SGD":
        sd["state"] = {0: {"momentum_buffer": torch.zeros(3, dtype=torch.float64)}}
    f(sd)
    opt, ps = _trained(name)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=rf"^state_dict\['state'\]\[{key}\]: no parameter group lists this id"):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for k, entry in before["state"].items():
        for n, v in entry.items():
            assert torch.equal(torch.as_tensor(after["state"][k][n]), torch.as_tensor(v))
