"""Hunt 43f: ``optkern.torch.SAM(params, base_optimizer, **kwargs)`` with the base optimizer's
low-precision keywords (``state_dtype``, ``block_size``, ``master_weights``, ``stochastic_rounding``,
``seed``).

SAM puts its ``**kwargs`` into its param groups' defaults (the reference implementation's form) and
builds the base optimizer over those groups with the same ``**kwargs``. The low-precision keywords
are the optimizer's, never a group's: every optkern.torch optimizer refuses them in a group. So
``SAM(model.parameters(), optkern.torch.Adam, lr=1e-3, state_dtype="int8")`` -- 8-bit moments for
float32 params, which SAM's ascent step never reads -- was refused with
"param_groups[0]['state_dtype']: ... a constructor keyword, not per param group", naming a group
entry the caller never wrote, for the keyword given to the constructor. Now they go to the base
optimizer only, and the SAM steps like ``SAM(..., functools.partial(Adam, state_dtype="int8"))``."""

import copy
import functools

import pytest

torch = pytest.importorskip("torch")
import optkern.torch as ot  # noqa: E402

LOWP = [
    dict(state_dtype="int8"),
    dict(state_dtype="int8", block_size=64),
    dict(state_dtype="bfloat16", seed=3),
    dict(master_weights=True),  # (float32 params are their own master)
]


def _model():
    torch.manual_seed(43)
    return torch.nn.Sequential(torch.nn.Linear(6, 70), torch.nn.Tanh(), torch.nn.Linear(70, 2))


def _train(opt, model, x, steps=3):
    def closure():
        opt.zero_grad()
        loss = model(x).pow(2).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        closure()
        opt.step(closure)


@pytest.mark.parametrize("lowp", LOWP, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_sam_takes_the_base_optimizers_low_precision_keywords(lowp):
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    a, b = _model(), _model()
    sam = ot.SAM(a.parameters(), ot.Adam, rho=0.05, lr=1e-2, **lowp)
    ref = ot.SAM(b.parameters(), functools.partial(ot.Adam, **lowp), rho=0.05, lr=1e-2)
    # the keywords configure the base optimizer; no group carries them
    assert all(k not in g for g in sam.param_groups for k in lowp)
    _train(sam, a, x)
    _train(ref, b, x)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
        for k, v in ref.state[q].items():
            assert torch.equal(sam.state[p][k], v) if isinstance(v, torch.Tensor) else sam.state[p][k] == v
    if lowp.get("state_dtype") == "int8":
        assert sam.state[next(a.parameters())]["exp_avg"].dtype is torch.uint8
    # its checkpoint resumes it
    c = _model()
    again = ot.SAM(c.parameters(), ot.Adam, rho=0.05, lr=1e-2, **lowp)
    again.load_state_dict(copy.deepcopy(sam.state_dict()))  # (torch's loader may keep the tensors)
    with torch.no_grad():
        for p, q in zip(c.parameters(), a.parameters()):
            p.copy_(q)
    _train(sam, a, x, 1)
    _train(again, c, x, 1)
    for p, q in zip(a.parameters(), c.parameters()):
        assert torch.equal(p, q)


def test_a_group_keyword_is_still_refused_naming_the_group():
    a = _model()
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['state_dtype'\]"):
        ot.SAM([{"params": list(a.parameters()), "state_dtype": "int8"}], ot.Adam, lr=1e-2)
    sam = ot.SAM(list(a.parameters())[:2], ot.Adam, lr=1e-2, state_dtype="int8")
    with pytest.raises(ValueError, match=r"^param_groups\[1\]\['state_dtype'\]"):
        sam.add_param_group({"params": list(a.parameters())[2:], "state_dtype": "int8"})
    assert len(sam.param_groups) == 1
