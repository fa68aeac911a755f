"""optkern.torch.NewtonCG: Hessian-free Newton-CG on torch params, against optkern.optim.NewtonCG
driven by hand on the same model (the very bits), on a quadratic (one step solves it) and on an MLP
with the Gauss-Newton operator of optkern.torch.hessian_operator."""

import copy
import inspect
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from optkern import hessian, optim  # noqa: E402
from torch_common import data, gpu, mlp  # noqa: E402 (after the torch skip)

torch.set_num_threads(1)
F = torch.nn.functional


def closure(model, opt, x, y):
    def f():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return f


def ggn(model, x, y):
    """The step's curvature: the Gauss-Newton matrix at the model's current params."""

    def out_and_loss():
        z = model(x)
        return z, F.cross_entropy(z, y)

    return lambda: ot.hessian_operator(out_and_loss, model.parameters(), kind="ggn")


def test_signature_is_optims_but_for_the_trial_gradient():
    ours = inspect.signature(ot.NewtonCG).parameters
    core = inspect.signature(optim.NewtonCG).parameters
    assert list(ours) == list(core)
    differ = {k for k in ours if ours[k].default != core[k].default}
    assert differ == {"reuse_trial_gradient"} and ours["reuse_trial_gradient"].default is False
    assert issubclass(ot.NewtonCG, torch.optim.Optimizer)


@pytest.mark.parametrize("reuse", [False, True])
def test_equals_optim_newton_cg_driven_by_hand(reuse):
    """The adapter against optkern.optim.NewtonCG over detached views of a second copy of the model
    (its closure returning (loss, grads) by hand): the same params, damping and counters, bit for bit."""
    a, b = mlp(torch.float64), mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    kw = dict(damping=0.5, max_cg_iter=8, cg_tol=1e-3, reuse_trial_gradient=reuse)
    ours = ot.NewtonCG(a.parameters(), ggn(a, x, y), **kw)
    views = [p.detach() for p in b.parameters()]
    ref = optim.NewtonCG(views, ggn(b, x, y), **kw)

    def by_hand():
        for p in b.parameters():
            p.grad = None
        with torch.enable_grad():
            loss = F.cross_entropy(b(x), y)
            loss.backward()
        return float(loss.detach()), [p.grad for p in b.parameters()]

    for _ in range(4):
        la = ours.step(closure(a, ours, x, y))
        lb = ref.step(by_hand)
        assert (la if isinstance(la, float) else la.item()) == lb  # (a float when the trial point was reused)
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        assert ours.param_groups[0]["damping"] == ref.param_groups[0]["damping"]
        assert ours.last == ref.last
    st = ours.state[next(a.parameters())]
    assert st["num_grad_evals"] == ref.num_grad_evals == ours.num_grad_evals and st["num_hvps"] == ref.num_hvps > 0
    assert F.cross_entropy(a(x), y) < 0.5 * F.cross_entropy(mlp(torch.float64)(x), y)  # (it trains)


def test_one_step_solves_a_quadratic():
    """f = sum(a w^2) / 2 - b.w with the exact curvature diag(a): one undamped step lands on b / a."""
    rng = np.random.default_rng(0)
    a_np, b_np = rng.uniform(0.5, 3.0, 40), rng.standard_normal(40)
    a, b = torch.from_numpy(a_np), torch.from_numpy(b_np)
    w = torch.nn.Parameter(torch.zeros(40, dtype=torch.float64))
    A = hessian.from_hvp(lambda v: a_np * v, 40)
    opt = ot.NewtonCG([w], A, damping=1e-8, min_damping=1e-10, max_cg_iter=40, cg_tol=1e-12, warm_start=0.0)

    def f():
        opt.zero_grad()
        loss = 0.5 * (a * w * w).sum() - (b * w).sum()
        loss.backward()
        return loss

    opt.step(f)
    assert torch.allclose(w.detach(), b / a, rtol=1e-7, atol=0)  # (the damping: lambda / a relative)
    assert opt.last["accepted"] and opt.last["cg_iterations"] <= 40


def _trained_two_steps():
    """(an MLP, its NewtonCG after two steps, the data)."""
    a = mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    oa = ot.NewtonCG(a.parameters(), ggn(a, x, y), damping=0.5, max_cg_iter=6)
    for _ in range(2):
        oa.step(closure(a, oa, x, y))
    return a, oa, x, y


def test_checkpoint_and_deepcopy_continue_identically():
    a, oa, x, y = _trained_two_steps()
    b = copy.deepcopy(a)
    ob = ot.NewtonCG(b.parameters(), ggn(b, x, y), damping=9.0, max_cg_iter=6)
    ob.load_state_dict(copy.deepcopy(oa.state_dict()))
    assert ob.param_groups[0]["damping"] == oa.param_groups[0]["damping"] != 9.0
    c, oc = copy.deepcopy((a, oa))  # (the curvature callable is shared: it still reads a)
    oc._curvature = oc._inner.curvature = ggn(c, x, y)
    for _ in range(2):
        oa.step(closure(a, oa, x, y))
        ob.step(closure(b, ob, x, y))
        oc.step(closure(c, oc, x, y))
    for p, q, r in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(p, q) and torch.equal(p, r)


def test_state_cleared_between_steps_starts_afresh():
    """``opt.state.clear()`` (torch's way to reset an optimizer): the next step is a fresh
    NewtonCG's (no warm start from the previous step, counters from zero), the damping the group's."""
    a, oa, x, y = _trained_two_steps()
    b = copy.deepcopy(a)
    ob = ot.NewtonCG(b.parameters(), ggn(b, x, y), damping=oa.param_groups[0]["damping"], max_cg_iter=6)
    oa.state.clear()
    oa.step(closure(a, oa, x, y))
    ob.step(closure(b, ob, x, y))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert oa.state[next(a.parameters())]["num_grad_evals"] == ob.state[next(b.parameters())]["num_grad_evals"]


# ---- bad input ----------------------------------------------------------------------------------


def _ps():
    return [torch.nn.Parameter(torch.ones(3, dtype=torch.float64))]


def _quad(ps, spoil=None):
    def f():
        loss = sum(0.5 * (p * p).sum() for p in ps)
        for p in ps:
            p.grad = p.detach().clone()
        return loss * math.nan if spoil == "nan" else loss

    return f


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(curvature="H"), TypeError, "curvature"),
        (dict(damping=-1.0), ValueError, "damping"),
        (dict(max_cg_iter=0), ValueError, "max_cg_iter"),
        (dict(min_damping=2.0, max_damping=1.0), ValueError, "min_damping"),
        (dict(preconditioner="diag"), TypeError, "preconditioner"),
    ],
)
def test_bad_construction(kw, err, match):
    kw = {"curvature": hessian.from_hvp(lambda v: v, 3), **kw}
    with pytest.raises(err, match=match):
        ot.NewtonCG(_ps(), **kw)


def test_bad_steps_refused_params_untouched():
    ps = _ps()
    opt = ot.NewtonCG(ps, hessian.from_hvp(lambda v: v, 4))  # (the wrong size)
    with pytest.raises(ValueError, match="curvature"):
        opt.step(_quad(ps))
    opt = ot.NewtonCG(ps, hessian.from_hvp(lambda v: v, 3))
    with pytest.raises(ValueError, match="closure"):
        opt.step(_quad(ps, "nan"))
    opt.param_groups[0]["damping"] = -1.0
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['damping'\]"):
        opt.step(_quad(ps))
    with pytest.raises(TypeError, match="closure"):
        opt.step(None)
    with pytest.raises(ValueError, match="parameter groups"):
        opt.add_param_group({"params": _ps()})
    assert torch.equal(ps[0], torch.ones(3, dtype=torch.float64)) and not opt.state


@gpu
def test_cuda_follows_the_cpu():
    a, b = mlp(torch.float64), mlp(torch.float64).cuda()
    x, y = data("mlp", torch.float64)
    xc, yc = x.cuda(), y.cuda()
    oa = ot.NewtonCG(a.parameters(), ggn(a, x, y), damping=0.5, max_cg_iter=8)
    ob = ot.NewtonCG(b.parameters(), ggn(b, xc, yc), damping=0.5, max_cg_iter=8)
    for _ in range(3):
        oa.step(closure(a, oa, x, y))
        ob.step(closure(b, ob, xc, yc))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q.cpu(), rtol=1e-9, atol=1e-12)
