"""optkern.torch's ``load_state_dict`` runs torch's load post-hooks on the optimizer as loaded (hunt 48b).

torch runs ``register_load_state_dict_post_hook`` hooks at the end of its ``load_state_dict``, its
``__setstate__`` done: the groups filled (a saved group without ``maximize`` reads False), an old
checkpoint's ``"step": 2`` made a tensor. optkern.torch called torch's loader, which ran them, and
only then filled the groups, made the step counts tensors and checked the groups: a hook saw a group
without ``maximize`` and a float ``step`` (a hook reading ``group["maximize"]`` failed with a
KeyError), and a load refused after torch's loader had returned had run the hooks of a load that
did not happen. The hooks now run once the load is done, as torch's, and not for a refused one.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
okt = pytest.importorskip("optkern.torch")


def _checkpoint(name: str) -> dict:
    p = torch.nn.Parameter(torch.ones(3))
    opt = getattr(torch.optim, name)([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    sd = copy.deepcopy(opt.state_dict())
    del sd["param_groups"][0]["maximize"]
    sd["state"][0]["step"] = 1.0  # (an older torch's number)
    return sd


def _seen(module, name: str, sd: dict) -> dict:
    q = torch.nn.Parameter(torch.ones(3))
    opt = getattr(module, name)([q], lr=0.1)
    seen: dict = {}

    def hook(o):
        g = o.param_groups[0]
        step = o.state[q]["step"]
        seen.update(maximize=g["maximize"], foreach=g["foreach"], step=(type(step), step.dtype, float(step)))

    opt.register_load_state_dict_post_hook(hook)
    opt.load_state_dict(copy.deepcopy(sd))
    return seen


@pytest.mark.parametrize("name", ["Adam", "AdamW", "NAdam", "RMSprop", "Adadelta", "Adagrad"])
def test_a_post_hook_sees_the_loaded_optimizer_as_torchs_does(name):
    sd = _checkpoint(name)
    assert _seen(okt, name, sd) == _seen(torch.optim, name, sd)


def test_a_post_hook_does_not_run_for_a_refused_load():
    sd = _checkpoint("Adam")
    sd["param_groups"][0]["betas"] = (0.9, 1.5)  # (refused by the group checks)
    q = torch.nn.Parameter(torch.ones(3))
    opt = okt.Adam([q], lr=0.1)
    calls = []
    opt.register_load_state_dict_post_hook(lambda o: calls.append(1))
    with pytest.raises(ValueError, match="betas"):
        opt.load_state_dict(sd)
    assert calls == []
    opt.load_state_dict(_checkpoint("Adam"))
    assert calls == [1]
