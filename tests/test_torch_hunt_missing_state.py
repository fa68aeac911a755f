"""optkern.torch: a param's non-empty state that lacks an entry its step reads.

torch.optim raises KeyError for such a state: for a missing ``step`` already in
``load_state_dict`` (its ``__setstate__`` reads every non-empty entry's step), for a missing state
tensor at its step, after the earlier param groups were written. optkern.torch used to step a
state without ``step`` as step 1 at every step (the bias corrections and lr decay restarted
silently, the count never advanced), and raised a bare KeyError for a missing state tensor after
the earlier groups were written. Now: ValueError naming the entry, at load or before the step
writes anything. An empty dict still starts afresh, and SGD still makes a missing buffer."""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

pytestmark = pytest.mark.usefixtures("float64_default")  # (tests/conftest.py)

# every adapter that counts steps, with every state tensor its hyper-parameters make it keep
COUNTED = [
    ("Adam", dict(lr=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.1)),
    ("NAdam", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.5)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("Adadelta", dict(lr=0.5)),
]


def _stepped(name: str, hp: dict, groups: int = 1):
    """An optimizer over ``groups`` one-param groups, stepped once; (optimizer, params)."""
    ps = [torch.nn.Parameter(torch.linspace(-1.0, 1.0, 5) + i) for i in range(groups)]
    opt = getattr(ot, name)([{"params": [p]} for p in ps], **hp)
    for p in ps:
        p.grad = torch.linspace(0.5, 1.5, 5)
    opt.step()
    return opt, ps


def _keys(name: str, hp: dict) -> list:
    opt, ps = _stepped(name, hp)
    return sorted(opt.state[ps[0]])


CASES = [(n, hp, k) for n, hp in COUNTED for k in _keys(n, hp)]
IDS = [f"{n}-{k}" for n, _, k in CASES]


@pytest.mark.parametrize("name, hp, key", CASES, ids=IDS)
def test_entry_deleted_between_steps_is_named_before_anything_is_written(name, hp, key):
    # two groups: the second param's state lost ``key``; the first group must not be stepped either
    opt, ps = _stepped(name, hp, groups=2)
    del opt.state[ps[1]][key]
    before = [p.detach().clone() for p in ps]
    steps = float(opt.state[ps[0]]["step"])
    with pytest.raises(ValueError, match=rf"state\[param_groups\[1\]\['params'\]\[0\]\]: missing .*'{key}'"):
        opt.step()
    for p, b in zip(ps, before):
        assert torch.equal(p.detach(), b)
    assert float(opt.state[ps[0]]["step"]) == steps


@pytest.mark.parametrize("name, hp, key", CASES, ids=IDS)
def test_state_dict_entry_without_it_is_refused_whole(name, hp, key):
    opt, ps = _stepped(name, hp)
    sd = opt.state_dict()
    del sd["state"][0][key]
    keep = {k: v.clone() for k, v in opt.state[ps[0]].items()}
    with pytest.raises(ValueError, match=rf"state_dict\['state'\]\[0\]: missing '{key}'"):
        opt.load_state_dict(sd)
    assert sorted(opt.state[ps[0]]) == sorted(keep)
    for k, v in keep.items():
        assert torch.equal(opt.state[ps[0]][k], v)
    if key == "step":  # torch refuses it too (KeyError in its loader)
        ref = getattr(torch.optim, name)([torch.nn.Parameter(torch.zeros(5))], **hp)
        with pytest.raises(KeyError):
            ref.load_state_dict(sd)


@pytest.mark.parametrize(
    "name, hp, switch",
    [
        ("Adam", dict(lr=0.1), dict(amsgrad=True)),
        ("RMSprop", dict(lr=0.01), dict(momentum=0.9)),
        ("RMSprop", dict(lr=0.01), dict(centered=True)),
    ],
)
def test_hyper_parameter_needing_new_state_is_named_before_anything_is_written(name, hp, switch):
    # torch raises KeyError for the state it lacks, after the earlier groups were written
    opt, ps = _stepped(name, hp, groups=2)
    opt.param_groups[1].update(switch)
    before = [p.detach().clone() for p in ps]
    with pytest.raises(ValueError, match=r"state\[param_groups\[1\]\['params'\]\[0\]\]: missing state"):
        opt.step()
    for p, b in zip(ps, before):
        assert torch.equal(p.detach(), b)


@pytest.mark.parametrize("name, hp", COUNTED, ids=[n for n, _ in COUNTED])
def test_cleared_or_empty_state_still_starts_afresh(name, hp):
    opt, ps = _stepped(name, hp)
    opt.state[ps[0]].clear()
    opt.step()
    assert float(opt.state[ps[0]]["step"]) == 1.0
    sd = opt.state_dict()
    sd["state"][0] = {}
    opt.load_state_dict(sd)
    opt.step()
    assert float(opt.state[ps[0]]["step"]) == 1.0


def test_sgd_missing_buffer_and_adagrad_norm_b_sq_before_a_step_are_still_fine():
    opt, ps = _stepped("SGD", dict(lr=0.1, momentum=0.9))
    del opt.state[ps[0]]["momentum_buffer"]
    opt.step()  # (made from the next grad, as torch makes it)
    assert "momentum_buffer" in opt.state[ps[0]]
    # AdaGrad-Norm: a param without a grad so far holds the group's b_sq and no step
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = ot.AdagradNorm([a, b], lr=0.1)
    a.grad = torch.ones(3)
    opt.step()
    assert "step" not in opt.state[b] and "b_sq" in opt.state[b]
    opt.load_state_dict(opt.state_dict())
    b.grad = torch.ones(3)
    opt.step()
    assert [float(opt.state[p]["step"]) for p in (a, b)] == [2.0, 1.0]


@pytest.mark.parametrize("lost", ["master_param", "exp_avg"])
def test_low_precision_state_missing_an_entry_is_refused_before_any_write(lost):
    """A bfloat16 param's master copy (or a moment) deleted between steps: a bare KeyError once,
    from the step's view building after the planning; now named, nothing written (the float32
    param of the same group, another native call, keeps its bits)."""
    a = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    b = torch.nn.Parameter(torch.ones(4, dtype=torch.float32))
    opt = ot.Adam([a, b], lr=0.1, master_weights=True)
    for _ in range(2):
        a.grad, b.grad = torch.ones(4, dtype=torch.bfloat16), torch.ones(4, dtype=torch.float32)
        opt.step()
    del opt.state[a][lost]
    before = (a.detach().clone(), b.detach().clone(), {k: v.clone() for k, v in opt.state[b].items()})
    with pytest.raises(ValueError, match=rf"state\[param_groups\[0\]\['params'\]\[0\]\]: missing state '{lost}'"):
        opt.step()
    assert torch.equal(a, before[0]) and torch.equal(b, before[1])
    assert all(torch.equal(v, before[2][k]) for k, v in opt.state[b].items())
