"""optkern.torch: checkpoints in older torch formats, and step counts the step cannot advance.

torch < 1.12 saved a param's ``step`` as a Python number (torch.optim's ``__setstate__`` turns it
into a tensor at load), torch 1.x SGD saved ``{'momentum_buffer': None}`` for every param
(torch's SGD makes the buffer from the next grad), and torch's loader keeps an integer step
tensor as it is. Each loads and continues as in torch.optim. A step count set between steps to
something the step cannot advance in place is named before anything is written (torch refuses
it too, with a RuntimeError).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

torch.set_num_threads(1)

# every adapter with torch's step count (NAdam: mu_product as a number too)
COUNTED = [
    ("Adam", dict(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)),
    ("AdamW", dict(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False)),
    ("NAdam", dict(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.5, weight_decay=0.0, eps=1e-10, initial_accumulator_value=0.0)),
    ("RMSprop", dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False)),
    ("Adadelta", dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0)),
]
_MOMENTS = {
    "Adam": ("exp_avg", "exp_avg_sq"),
    "AdamW": ("exp_avg", "exp_avg_sq"),
    "NAdam": ("exp_avg", "exp_avg_sq"),
    "Adagrad": ("sum",),
    "RMSprop": ("square_avg",),
    "Adadelta": ("square_avg", "acc_delta"),
}


def _checkpoint(name: str, hp: dict, step) -> dict:
    """A one-param checkpoint of torch.optim.<name> whose step count is ``step`` (NAdam's
    mu_product a number as well, as torch < 1.12 saved it)."""
    g = torch.Generator().manual_seed(3)
    step = step.clone() if isinstance(step, torch.Tensor) else step
    entry = {"step": step, **{k: torch.rand(3, generator=g) + 0.5 for k in _MOMENTS[name]}}
    if name == "NAdam":
        entry["mu_product"] = 0.75
    return {"state": {0: entry}, "param_groups": [{**hp, "params": [0]}]}


def _load_and_step(mod, name: str, hp: dict, sd: dict, steps: int = 2):
    p = torch.nn.Parameter(torch.ones(3))
    opt = getattr(mod, name)([p], **hp)
    opt.load_state_dict(sd)
    for _ in range(steps):
        p.grad = torch.full((3,), 0.5)
        opt.step()
    return p, opt


def _same_as_torch(name: str, hp: dict, step) -> None:
    """Each loads its own copy: torch's loader keeps the checkpoint's tensors where it need not
    cast them, and steps them in place. float32: as close as torch's own float32 paths are."""
    ref, ref_opt = _load_and_step(torch.optim, name, hp, _checkpoint(name, hp, step))
    mine, opt = _load_and_step(ot, name, hp, _checkpoint(name, hp, step))
    rtol = 1e-13 if torch.get_default_dtype() == torch.float64 else 1e-5
    np.testing.assert_allclose(mine.detach().numpy(), ref.detach().numpy(), rtol=rtol, atol=0)
    a, b = ref_opt.state[ref], opt.state[mine]
    assert set(a) == set(b)
    for k, v in a.items():
        assert isinstance(b[k], torch.Tensor) and b[k].dtype == v.dtype and b[k].device == v.device, k
        np.testing.assert_allclose(b[k].double().numpy(), v.double().numpy(), rtol=rtol, atol=0, err_msg=k)


@pytest.mark.parametrize("default", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("step", [2, 2.0], ids=["int", "float"])
@pytest.mark.parametrize("name, hp", COUNTED, ids=[n for n, _ in COUNTED])
def test_number_step_loads_as_torchs_step_tensor_and_continues(name, hp, step, default):
    """``"step": 2``: torch's ``__setstate__`` makes ``torch.tensor(2.0, dtype=<its scalar
    dtype>)`` (the default dtype's: float32 or float64) and the steps continue from it; the
    adapter advanced it after its native call wrote, with a TypeError, so each retry moved the
    params again."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        _same_as_torch(name, hp, step)
    finally:
        torch.set_default_dtype(old)


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("dtype", [torch.int64, torch.bfloat16], ids=["int64", "bfloat16"])
@pytest.mark.parametrize("name, hp", COUNTED, ids=[n for n, _ in COUNTED])
def test_step_tensor_of_another_dtype_is_kept_and_advanced_as_torch(name, hp, dtype):
    """torch's loader keeps a step tensor's dtype as saved (an int64 one; bfloat16, which NumPy
    lacks), and ``step_t += 1`` advances it."""
    _same_as_torch(name, hp, torch.tensor(2, dtype=dtype))


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("name", ["Adam", "Adagrad", "NAdam"])
@pytest.mark.parametrize("how", ["number", "nan", "bool", "str", "vector"])
def test_step_count_the_step_cannot_advance_is_named_before_anything_is_written(name, how):
    """A step count set between steps to a number (torch: RuntimeError "singleton tensors"), a
    string, a bool or 2-element tensor, or made NaN in place: named (group 1's param, after group 0's call would have
    written), and no param nor state changes; set right, the steps continue."""
    g = torch.Generator().manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(3, generator=g)) for _ in range(2)]
    opt = getattr(ot, name)([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.05}], lr=0.1)
    for p in ps:
        p.grad = torch.randn(3, generator=g)
    opt.step()
    st = opt.state[ps[1]]
    if how == "number":
        st["step"] = 1
    elif how == "nan":
        st["step"].fill_(float("nan"))
    elif how == "bool":
        st["step"] = torch.tensor(True)
    else:
        st["step"] = "1" if how == "str" else torch.ones(2)

    def tensors():
        return [p.detach() for p in ps] + [v for p in ps for v in opt.state[p].values() if isinstance(v, torch.Tensor)]

    before = [t.clone() for t in tensors()]
    err = TypeError if how != "nan" else ValueError
    with pytest.raises(err, match=r"state\[param_groups\[1\]\['params'\]\[0\]\]\['step'\]"):
        opt.step()
    assert all(_equal(a, b) for a, b in zip(tensors(), before, strict=True))
    st["step"] = torch.tensor(1.0)
    opt.step()
    assert float(opt.state[ps[1]]["step"]) == 2.0 and float(opt.state[ps[0]]["step"]) == 2.0


def _equal(a, b) -> bool:
    return a.dtype == b.dtype and bool(((a == b) | (a.isnan() & b.isnan())).all())


@pytest.mark.usefixtures("float64_default")
def test_nadam_number_mu_product_set_between_steps_is_named():
    p = torch.nn.Parameter(torch.ones(3))
    opt = ot.NAdam([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    opt.state[p]["mu_product"] = 0.5
    before = p.detach().clone()
    with pytest.raises(TypeError, match=r"\['mu_product'\]: expected a 1-element floating-point tensor, got float"):
        opt.step()
    assert torch.equal(p.detach(), before)


# ---- SGD's momentum_buffer None ---------------------------------------------------------


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_checkpoint_with_none_momentum_buffer_loads_and_steps_as_torch(momentum):
    """torch 1.x SGD saved ``{'momentum_buffer': None}``; torch 2 loads it and makes the buffer
    from the next grad (with momentum; without, the None stays in its state dict)."""
    sd = {
        "state": {0: {"momentum_buffer": None}, 1: {"momentum_buffer": None}},
        "param_groups": [
            {"params": [0, 1], "lr": 0.1, "momentum": momentum, "dampening": 0, "weight_decay": 0, "nesterov": False}
        ],
    }
    out = []
    for mod in (torch.optim, ot):
        ps = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))]
        opt = mod.SGD(ps, lr=0.1, momentum=momentum)
        opt.load_state_dict(sd)
        for s in range(3):
            for p in ps:
                p.grad = torch.full(p.shape, 0.5 + s)
            opt.step()
        out.append((ps, opt.state_dict()["state"]))
    (ref, ref_state), (mine, state) = out
    for a, b in zip(ref, mine):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-13, atol=0)
    assert set(state) == set(ref_state)
    for k in ref_state:
        assert set(state[k]) == set(ref_state[k])
        for n, v in ref_state[k].items():
            if v is None:
                assert state[k][n] is None
            else:
                np.testing.assert_allclose(state[k][n].numpy(), v.numpy(), rtol=1e-13, atol=0)


@pytest.mark.usefixtures("float64_default")
def test_none_state_tensor_other_than_sgds_buffer_is_still_refused():
    p = torch.nn.Parameter(torch.ones(3))
    opt = ot.Adam([p], lr=0.1)
    sd = {
        "state": {0: {"step": torch.tensor(1.0), "exp_avg": None, "exp_avg_sq": torch.zeros(3)}},
        "param_groups": [{"params": [0], "lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0}],
    }
    with pytest.raises(TypeError, match=r"state_dict\['state'\]\[0\]\['exp_avg'\]: expected a torch.Tensor"):
        opt.load_state_dict(sd)
    assert not opt.state


def test_low_precision_sgd_number_step_on_a_new_buffer_is_named_before_anything_is_written():
    """Low-precision SGD counts steps; a param whose buffer the step makes anew (deleted by the
    user) runs outside the cached layout: its step count, set to a number, is still named before
    group 0's call writes."""
    g = torch.Generator().manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(3, generator=g)) for _ in range(2)]
    opt = ot.SGD([{"params": [ps[0]]}, {"params": [ps[1]]}], lr=0.1, momentum=0.9, state_dtype="bfloat16")
    for p in ps:
        p.grad = torch.randn(3, generator=g)
    opt.step()
    st = opt.state[ps[1]]
    del st["momentum_buffer"]
    st["step"] = 1
    before = [p.detach().clone() for p in ps] + [opt.state[ps[0]]["momentum_buffer"].clone()]
    with pytest.raises(TypeError, match=r"state\[param_groups\[1\]\['params'\]\[0\]\]\['step'\]"):
        opt.step()
    after = [p.detach() for p in ps] + [opt.state[ps[0]]["momentum_buffer"]]
    assert all(torch.equal(a, b) for a, b in zip(after, before))
    st["step"] = torch.tensor(1.0)
    opt.step()
    assert float(opt.state[ps[1]]["step"]) == 2.0


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("name", ["Adam", "NAdam", "Adagrad"])
def test_equal_step_counts_of_different_dtypes_advance_as_torch(name):
    """An int64 and a float step count of equal value share a call (they cannot share one joined
    tensor): each advanced by torch's ``+= 1``, the int one staying int; one changed in place
    later (no joined tensor's version to tell) is that param's own count."""
    hp = dict(COUNTED)[name]
    out = []
    for mod in (torch.optim, ot):
        ps = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))]
        sd = {"state": {}, "param_groups": [{**hp, "params": [0, 1]}]}
        for i, (p, step) in enumerate(zip(ps, (torch.tensor(2), torch.tensor(2.0)))):
            sd["state"][i] = {"step": step, **{k: torch.full(p.shape, 0.5) for k in _MOMENTS[name]}}
            if name == "NAdam":
                sd["state"][i]["mu_product"] = torch.tensor(0.75)
        opt = getattr(mod, name)(ps, **hp)
        opt.load_state_dict(sd)
        for s in range(4):
            for p in ps:
                p.grad = torch.full(p.shape, 0.5 + s)
            if s == 2:
                opt.state[ps[0]]["step"].fill_(0)
            opt.step()
        out.append((ps, [opt.state[p]["step"] for p in ps]))
    (ref, ref_steps), (mine, steps) = out
    for a, b in zip(ref, mine):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-13, atol=0)
    got = [(s.dtype, float(s)) for s in steps]
    assert got == [(s.dtype, float(s)) for s in ref_steps] == [(torch.int64, 2.0), (torch.float64, 6.0)]


@pytest.mark.parametrize("master", [False, True], ids=["float32", "bfloat16-master"])
def test_adagrad_norm_integer_step_continues_as_a_float_one(master):
    """AdagradNorm (not in torch) advances an int64 step count of a checkpoint as torch's
    optimizers do: it stays int64, and the params move as from the float count (it raised after
    its native call wrote)."""
    out = []
    for step in (torch.tensor(2.0), torch.tensor(2)):
        dtype = torch.bfloat16 if master else torch.float32
        kw = {"master_weights": True} if master else {}
        p = torch.nn.Parameter(torch.ones(3, dtype=dtype))
        opt = ot.AdagradNorm([p], lr=0.1, **kw)
        p.grad = torch.ones(3, dtype=dtype)
        opt.step()
        sd = opt.state_dict()
        sd["state"][0]["step"] = step
        opt = ot.AdagradNorm([p], lr=0.1, **kw)
        opt.load_state_dict(sd)
        for _ in range(2):
            p.grad = torch.full((3,), 0.5, dtype=dtype)
            opt.step()
        out.append((p.detach().float(), opt.state[p]["step"]))
    assert torch.equal(out[0][0], out[1][0])
    assert out[1][1].dtype == torch.int64 and int(out[1][1]) == 4
