"""optkern.torch.SAM against the reference PyTorch implementation's algorithm (github.com/davda54/sam,
written out below in torch), plain and adaptive, over torch.optim and optkern.torch base optimizers."""

import copy

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from optkern.benchmarks.sam_reference import ReferenceSAM  # noqa: E402
from torch_common import data, gpu, mlp  # noqa: E402 (after the torch skip)

torch.set_num_threads(1)
F = torch.nn.functional


def loss_of(model, x, y):
    return F.cross_entropy(model(x), y)


def train(model, opt, x, y, steps, use_closure):
    for _ in range(steps):
        loss_of(model, x, y).backward()
        if use_closure:
            opt.step(lambda: loss_of(model, x, y).backward())
            opt.zero_grad()
        else:
            opt.first_step(zero_grad=True)
            loss_of(model, x, y).backward()
            opt.second_step(zero_grad=True)


def rel(a, b) -> float:
    with torch.no_grad():
        pa, pb = list(a.parameters()), list(b.parameters())
        return max(float((p - q).abs().max()) for p, q in zip(pa, pb)) / max(float(p.abs().max()) for p in pa)


SGD_KW, ADAMW_KW = dict(lr=0.1, momentum=0.9), dict(lr=1e-2, weight_decay=0.1)
#: base optimizer under test -> (its class, the reference's base, hyper-parameters)
BASES = {
    "torch.optim.SGD": (torch.optim.SGD, torch.optim.SGD, SGD_KW),
    "optkern.torch.SGD": (ot.SGD, torch.optim.SGD, SGD_KW),
    "optkern.torch.AdamW": (ot.AdamW, torch.optim.AdamW, ADAMW_KW),
}


@pytest.mark.parametrize("use_closure", [False, True], ids=["two-steps", "closure"])
@pytest.mark.parametrize("adaptive, rho", [(False, 0.05), (True, 0.5)], ids=["SAM", "ASAM"])
@pytest.mark.parametrize("base", list(BASES))
def test_matches_the_reference_in_float64(base, adaptive, rho, use_closure):
    a, b = mlp(torch.float64), mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    cls, ref_cls, kw = BASES[base]
    ref = ReferenceSAM(a.parameters(), ref_cls, rho, adaptive, **kw)
    ours = ot.SAM(b.parameters(), cls, rho=rho, adaptive=adaptive, **kw)
    train(a, ref, x, y, 8, use_closure=False)
    train(b, ours, x, y, 8, use_closure)
    assert rel(a, b) <= 1e-12
    assert rel(a, mlp(torch.float64)) > 1e-3  # (it trained)


def test_float32_within_rounding_of_the_reference():
    a, b = mlp(torch.float32), mlp(torch.float32)
    x, y = data("mlp", torch.float32)
    ref = ReferenceSAM(a.parameters(), torch.optim.SGD, 0.05, False, lr=0.1, momentum=0.9)
    ours = ot.SAM(b.parameters(), ot.SGD, lr=0.1, momentum=0.9)
    train(a, ref, x, y, 5, use_closure=False)
    train(b, ours, x, y, 5, use_closure=False)
    assert rel(a, b) <= 1e-5


@pytest.mark.parametrize("adaptive", [False, True])
def test_rho_zero_is_the_base_optimizer_bit_for_bit(adaptive):
    a, b = mlp(torch.float64), mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    plain = ot.SGD(a.parameters(), lr=0.1, momentum=0.9)
    sam = ot.SAM(b.parameters(), ot.SGD, rho=0.0, adaptive=adaptive, lr=0.1, momentum=0.9)
    for _ in range(4):
        plain.zero_grad()
        loss_of(a, x, y).backward()
        plain.step()
        loss_of(b, x, y).backward()
        sam.step(lambda: loss_of(b, x, y).backward())
        sam.zero_grad()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_param_without_grad_stays_and_state_is_the_bases():
    m = mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    idle = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = ot.SAM([*m.parameters(), idle], ot.SGD, lr=0.1, momentum=0.9)
    loss_of(m, x, y).backward()
    opt.first_step(zero_grad=True)
    assert torch.equal(idle, torch.ones(3, dtype=torch.float64))
    loss_of(m, x, y).backward()
    opt.second_step()
    assert torch.equal(idle, torch.ones(3, dtype=torch.float64))
    assert "momentum_buffer" in opt.state[next(m.parameters())]
    assert opt.state is opt.base_optimizer.state and opt.param_groups is opt.base_optimizer.param_groups


@pytest.mark.parametrize("base", [torch.optim.SGD, ot.SGD])
def test_checkpoint_restores_training_and_reference_checkpoints_load(base):
    """state_dict holds the base's momentum: a fresh SAM loading it continues exactly; the
    reference's own state_dict (old_p entries, no momentum) loads as well."""
    a = mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    oa = ot.SAM(a.parameters(), base, rho=0.1, lr=0.1, momentum=0.9)
    train(a, oa, x, y, 3, use_closure=False)
    b = copy.deepcopy(a)
    ob = ot.SAM(b.parameters(), base, rho=0.7, lr=0.5, momentum=0.9)
    ob.load_state_dict(copy.deepcopy(oa.state_dict()))
    assert ob.param_groups[0]["rho"] == 0.1 and ob.param_groups[0]["lr"] == 0.1
    assert ob.state is ob.base_optimizer.state and ob.param_groups is ob.base_optimizer.param_groups
    train(a, oa, x, y, 3, use_closure=False)
    train(b, ob, x, y, 3, use_closure=False)
    assert rel(a, b) == 0.0
    r = mlp(torch.float64)
    ref = ReferenceSAM(r.parameters(), torch.optim.SGD, 0.1, False, lr=0.1, momentum=0.9)
    train(r, ref, x, y, 1, use_closure=False)
    oc = ot.SAM(mlp(torch.float64).parameters(), base, lr=0.1, momentum=0.9)
    oc.load_state_dict(ref.state_dict())
    assert oc.param_groups[0]["rho"] == 0.1


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("between", [False, True], ids=["after-a-step", "between-first-and-second"])
def test_copied_sam_continues_as_the_original(how, between):
    """A model copied with its SAM (deepcopy / pickle, as torch's optimizers allow), after a whole
    step or between ``first_step`` and ``second_step`` (the moved params' backups carried): the
    copy trains its model exactly as the original trains its own."""
    import pickle

    a = mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    oa = ot.SAM(a.parameters(), ot.AdamW, rho=0.1, **ADAMW_KW)
    train(a, oa, x, y, 2, use_closure=False)
    if between:
        loss_of(a, x, y).backward()
        oa.first_step(zero_grad=True)
    b, ob = copy.deepcopy((a, oa)) if how == "deepcopy" else pickle.loads(pickle.dumps((a, oa)))
    assert ob.state is ob.base_optimizer.state and ob.param_groups is ob.base_optimizer.param_groups
    assert all(p is q for p, q in zip(b.parameters(), ob.param_groups[0]["params"]))
    if between:
        for m, o in ((a, oa), (b, ob)):
            loss_of(m, x, y).backward()
            o.second_step(zero_grad=True)
    train(a, oa, x, y, 3, use_closure=True)
    train(b, ob, x, y, 3, use_closure=True)
    assert rel(a, b) == 0.0
    assert rel(a, mlp(torch.float64)) > 1e-3


def test_channels_last_params():
    """A channels_last conv weight is perturbed and restored in memory order (its backup in its layout)."""
    conv = torch.nn.Conv2d(2, 3, 3).double().to(memory_format=torch.channels_last)
    ref = copy.deepcopy(conv).to(memory_format=torch.contiguous_format)
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    opt = ot.SAM(conv.parameters(), torch.optim.SGD, lr=0.1)
    oref = ReferenceSAM(ref.parameters(), torch.optim.SGD, 0.05, False, lr=0.1)
    for m, o in ((conv, opt), (ref, oref)):
        m(x).square().mean().backward()
        o.first_step(zero_grad=True)
        m(x).square().mean().backward()
        o.second_step(zero_grad=True)
    assert not conv.weight.is_contiguous()
    assert torch.allclose(conv.weight, ref.weight, rtol=1e-13, atol=1e-15)


# ---- bad input ----------------------------------------------------------------------------------


def _params():
    return [
        torch.nn.Parameter(torch.ones(3, dtype=torch.float64)),
        torch.nn.Parameter(torch.ones(2, dtype=torch.float64)),
    ]


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(base_optimizer=torch.optim.SGD, rho=-0.1, lr=0.1), ValueError, "rho"),
        (dict(base_optimizer=torch.optim.SGD, adaptive="yes", lr=0.1), TypeError, "adaptive"),
        (dict(base_optimizer="SGD", lr=0.1), TypeError, "base_optimizer"),
        (dict(base_optimizer=lambda groups, **kw: object(), lr=0.1), TypeError, "base_optimizer"),
    ],
)
def test_bad_construction(kw, err, match):
    with pytest.raises(err, match=match):
        ot.SAM(_params(), **kw)


def test_bad_use_refused_before_anything_moves():
    ps = _params()
    opt = ot.SAM([{"params": ps[:1]}, {"params": ps[1:], "rho": 0.2}], ot.SGD, lr=0.1)  # groups with their own rho
    for p in ps:
        p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['rho'\]"):
        opt.first_step()
    opt.param_groups[1]["rho"] = 0.05
    ps[1].grad.data = torch.ones(5, dtype=torch.float64)  # (past torch's own check)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\]\.grad"):
        opt.first_step()
    assert all(torch.equal(p, torch.ones_like(p)) for p in ps)
    with pytest.raises(RuntimeError, match="second_step: call first_step first"):
        opt.second_step()
    with pytest.raises(TypeError, match="closure"):
        opt.step()
    ps[1].grad = torch.ones_like(ps[1])
    opt.first_step()
    with pytest.raises(RuntimeError, match="already perturbed"):
        opt.first_step()
    with pytest.raises(RuntimeError, match="perturbed"):
        opt.load_state_dict(opt.state_dict())


def test_closure_error_puts_the_params_back():
    ps = _params()
    opt = ot.SAM(ps, torch.optim.SGD, lr=0.1)
    for p in ps:
        p.grad = torch.ones_like(p)

    def boom():
        raise KeyError("in the closure")

    with pytest.raises(KeyError, match="in the closure"):
        opt.step(boom)
    assert all(torch.equal(p, torch.ones_like(p)) for p in ps)
    opt.first_step()  # (not left perturbed)


@gpu
@pytest.mark.parametrize("adaptive", [False, True])
def test_cuda_matches_cpu(adaptive):
    a, b = mlp(torch.float64), mlp(torch.float64).cuda()
    x, y = data("mlp", torch.float64)
    oa = ot.SAM(a.parameters(), ot.SGD, rho=0.3, adaptive=adaptive, lr=0.1, momentum=0.9)
    ob = ot.SAM(b.parameters(), ot.SGD, rho=0.3, adaptive=adaptive, lr=0.1, momentum=0.9)
    train(a, oa, x, y, 3, use_closure=True)
    train(b, ob, x.cuda(), y.cuda(), 3, use_closure=True)
    assert rel(a, b.cpu()) <= 1e-12


def test_a_group_added_later_goes_to_the_base_with_the_defaults():
    """add_param_group after construction: the base optimizer's own (its checks refuse a bad group
    at once, as they do for the base alone), with SAM's rho / adaptive filled in."""
    m = mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    layers = list(m.parameters())
    opt = ot.SAM(layers[:2], ot.SGD, rho=0.1, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"param_groups\[1\]: lr"):
        opt.add_param_group({"params": layers[2:], "lr": -1.0})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": layers[2:], "lr": 0.05})
    g = opt.param_groups[1]
    assert opt.param_groups is opt.base_optimizer.param_groups and len(opt.param_groups) == 2
    assert g["rho"] == 0.1 and g["adaptive"] is False and g["lr"] == 0.05 and g["momentum"] == 0.9
    train(m, opt, x, y, 2, use_closure=True)
    assert "momentum_buffer" in opt.state[layers[-1]]


def test_params_of_two_dtypes_refused_before_anything_moves():
    ps = [torch.nn.Parameter(torch.ones(3, dtype=torch.float64)), torch.nn.Parameter(torch.ones(2))]
    opt = ot.SAM(ps, torch.optim.SGD, lr=0.1)
    for p in ps:
        p.grad = torch.ones_like(p)
    with pytest.raises(TypeError, match=r"^param_groups\[0\]\['params'\]\[1\]: torch.float32"):
        opt.first_step()
    assert all(torch.equal(p, torch.ones_like(p)) for p in ps) and opt._moved is None
