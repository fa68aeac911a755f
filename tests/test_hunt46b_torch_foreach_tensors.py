"""torch.optim's refusals of tensor hyper-parameters, followed by optkern.torch (torch 2.13).

torch's Adam and AdamW refuse, at construction, a tensor ``lr`` or beta with ``foreach=True``
(ValueError) and a pair of betas that are not both floats or both tensors; at a step, a foreach
group's tensor ``lr`` (RuntimeError) and tensor betas (ValueError); every optimizer refuses
``fused=True`` with ``foreach=True``. torch's foreach NAdam fails mid-step on tensor betas. optkern
took all of these. A pair with one tensor that torch does take (NAdam's, or Adam's set on a group
after construction) is computed by torch in tensor ops: optkern read it as two numbers."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
import optkern.torch as ot  # noqa: E402 (after the torch skip)
from torch_ieee_sqrt import ieee_sqrt  # noqa: E402

T = torch.tensor


def _outcome(make, later=None):
    """(exception type, message) or None of constructing with ``make`` and stepping once (``later``
    edits the optimizer before the step); the param and its state checked unwritten on failure."""
    p = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 5))
    before = p.detach().clone()
    try:
        opt = make([p])
    except Exception as e:  # (any exception type: compared with torch's)
        return type(e), str(e)
    if later is not None:
        later(opt)
    p.grad = torch.ones(5)
    try:
        opt.step()
    except Exception as e:
        if type(opt).__module__.startswith("optkern"):  # (optkern's: nothing written)
            assert torch.equal(p.detach(), before) and not opt.state.get(p)
        return type(e), str(e)
    return None


CONSTRUCTOR = [
    dict(lr=T(1e-3), foreach=True),
    dict(lr=T(1e-3, dtype=torch.float64), foreach=True),
    dict(betas=(T(0.9), T(0.999)), foreach=True),
    dict(betas=T([0.9, 0.999]), foreach=True),
    dict(betas=(T(0.9), 0.999)),
    dict(betas=(0.9, T(0.999)), foreach=False),
    dict(betas=(0, 0.999)),
    dict(fused=True, foreach=True),
]


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("kw", CONSTRUCTOR, ids=range(len(CONSTRUCTOR)))
def test_constructor_refusals_are_torchs(name, kw):
    want = _outcome(lambda ps: getattr(torch.optim, name)(ps, **kw))
    assert want is not None  # (each case is one torch refuses)
    assert _outcome(lambda ps: getattr(ot, name)(ps, **kw)) == want


@pytest.mark.parametrize("name", ["SGD", "Adagrad"])
def test_fused_with_foreach_refused_as_torch(name):
    want = _outcome(lambda ps: getattr(torch.optim, name)(ps, fused=True, foreach=True))
    assert want == (RuntimeError, "`fused` and `foreach` cannot be `True` together.")
    assert _outcome(lambda ps: getattr(ot, name)(ps, fused=True, foreach=True)) == want


def _set(key, value):
    return lambda opt: opt.param_groups[0].__setitem__(key, value)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize(
    "later, kind, what",
    [
        (_set("lr", T(1e-3)), RuntimeError, "['lr']: lr as a Tensor"),
        (_set("betas", (T(0.9), T(0.999))), ValueError, "['betas']: beta1 as a Tensor"),
        (_set("betas", (0.9, T(0.999))), ValueError, "['betas']: beta2 as a Tensor"),
    ],
)
def test_a_foreach_groups_tensor_set_later_is_refused_at_the_step(name, later, kind, what):
    want = _outcome(lambda ps: getattr(torch.optim, name)(ps, foreach=True), later)
    got = _outcome(lambda ps: getattr(ot, name)(ps, foreach=True), later)
    assert want is not None and want[0] is kind and got is not None and got[0] is kind
    assert got[1] == f"param_groups[0]{what} is not supported for capturable=False and foreach=True"
    assert want[1].endswith(got[1].split(": ", 1)[1].split(" as ", 1)[1])


def test_an_added_groups_own_foreach_and_a_copy_keep_the_refusal():
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = ot.Adam([p], lr=0.1)
    opt.add_param_group({"params": [q], "lr": T(0.1), "foreach": True})
    p.grad, q.grad = torch.ones(3), torch.ones(3)
    with pytest.raises(RuntimeError, match=r"^param_groups\[1\]\['lr'\]: lr as a Tensor"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3)) and not opt.state  # (group 0 not stepped either)
    other = copy.deepcopy(ot.Adam([torch.nn.Parameter(torch.ones(3))], foreach=True))
    other.param_groups[0]["lr"] = T(0.1)  # (the constructor's foreach=True survives the copy)
    other.param_groups[0]["params"][0].grad = torch.ones(3)
    with pytest.raises(RuntimeError, match=r"lr as a Tensor"):
        other.step()


@pytest.mark.parametrize("betas", [(T(0.9), T(0.999)), (T(0.9), 0.999), (0.9, T(0.999)), T([0.9, 0.999])])
def test_foreach_nadam_with_tensor_betas_refused_before_writing(betas):
    want = _outcome(lambda ps: torch.optim.NAdam(ps, betas=betas, foreach=True))
    assert want is not None  # (torch's foreach step fails on them: after making and counting state)
    got = _outcome(lambda ps: ot.NAdam(ps, betas=betas, foreach=True))
    assert got is not None and got[0] is RuntimeError and got[1].startswith("param_groups[0]['betas']: ")


@pytest.mark.parametrize("name", ["SGD", "RMSprop", "Adagrad", "Adadelta", "NAdam"])
def test_foreach_with_a_tensor_lr_taken_where_torch_takes_it(name):
    assert _outcome(lambda ps: getattr(torch.optim, name)(ps, lr=T(1e-3), foreach=True)) is None
    assert _outcome(lambda ps: getattr(ot, name)(ps, lr=T(1e-3), foreach=True)) is None


def _train(mod, name, kw, later, dtype):
    p = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 37, dtype=dtype))
    extra = {} if mod is ot else {"foreach": False}
    opt = getattr(mod, name)([p], lr=0.01, **kw, **extra)
    if later is not None:
        later(opt)
    for k in range(5):
        p.grad = torch.cos(p.detach() * (k + 1))
        if mod is ot:
            opt.step()
        else:
            with ieee_sqrt():
                opt.step()
    return p.detach()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "name, kw, later",
    [
        ("NAdam", dict(betas=(T(0.9), 0.999)), None),
        ("NAdam", dict(betas=(0.9, T(0.999))), None),
        ("Adam", {}, _set("betas", (T(0.9), 0.999))),
        ("Adam", {}, _set("betas", (0.9, T(0.999)))),
        ("AdamW", {}, _set("betas", (0.9, T(0.999)))),
    ],
)
def test_one_tensor_beta_steps_as_torchs_tensor_ops(name, kw, later, dtype):
    # (torch computes 1 - beta2 ** t, 1 - beta2, ... of a float32 tensor in float32: 2e-7 apart)
    got, want = _train(ot, name, kw, later, dtype), _train(torch.optim, name, kw, later, dtype)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "NAdam"])
def test_tensor_betas_under_a_momentum_cycling_scheduler_step_as_torchs(name):
    # (OneCycleLR writes ``group["betas"] = (momentum, *group["betas"][1:])``: a float beside
    # the user's tensor beta2, which torch then computes with in tensor ops)
    def train(mod):
        p = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 13))
        extra = {} if mod is ot else {"foreach": False}
        opt = getattr(mod, name)([p], lr=0.01, betas=(T(0.9), T(0.999)), **extra)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=20)
        for k in range(6):
            p.grad = torch.cos(p.detach() * (k + 1))
            if mod is ot:
                opt.step()
            else:
                with ieee_sqrt():
                    opt.step()
            sched.step()
        assert isinstance(opt.param_groups[0]["betas"][0], float)
        return p.detach()

    torch.testing.assert_close(train(ot), train(torch.optim), rtol=0, atol=0)
