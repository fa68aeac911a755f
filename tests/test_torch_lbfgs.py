"""optkern.torch.LBFGS against torch.optim.LBFGS: iterates, stopping, state in torch's layout,
checkpoints crossing both ways, and bad input refused before anything is written."""

import collections
import copy
import inspect
import io
import math

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from torch_common import cnn, data, gpu, mlp  # noqa: E402 (after the torch skip)

torch.set_num_threads(1)
F = torch.nn.functional


def closure(model, opt, x, y, calls=None):
    """torch's L-BFGS closure: zero the grads, the loss and its backward, return the loss."""

    def f():
        if calls is not None:
            calls.append(1)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return f


def rel(a, b) -> float:
    """Largest difference of two models' params relative to the largest param of ``a``."""
    with torch.no_grad():
        pa, pb = list(a.parameters()), list(b.parameters())
        scale = max(float(p.abs().max()) for p in pa)
        return max(float((p - q).abs().max()) for p, q in zip(pa, pb)) / scale


def first(opt):
    return opt.state[opt._params[0]]


def test_signature_is_torchs():
    ours = inspect.signature(ot.LBFGS).parameters
    theirs = inspect.signature(torch.optim.LBFGS).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]
    assert issubclass(ot.LBFGS, torch.optim.Optimizer)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_iterates_match_torch_in_float64(kind, line_search_fn):
    """50 iterations (5 steps of max_iter=10, history 5: pairs dropped), step by step: params,
    returned loss, n_iter and func_evals (torch's stopping tests and line search)."""
    make = mlp if kind == "mlp" else cnn
    a, b = make(torch.float64), make(torch.float64)
    x, y = data(kind, torch.float64)
    kw = dict(max_iter=10, history_size=5, line_search_fn=line_search_fn)
    oa, ob = torch.optim.LBFGS(a.parameters(), **kw), ot.LBFGS(b.parameters(), **kw)
    for _ in range(5):
        la, lb = oa.step(closure(a, oa, x, y)), ob.step(closure(b, ob, x, y))
        assert isinstance(lb, torch.Tensor) and lb.requires_grad  # the closure's own loss, as torch
        assert float(lb.detach()) == pytest.approx(float(la.detach()), rel=1e-10)
        assert rel(a, b) <= 1e-10
        for k in ("n_iter", "func_evals"):
            assert first(ob)[k] == first(oa)[k]
        assert first(ob)["prev_loss"] == pytest.approx(first(oa)["prev_loss"], rel=1e-10)
    assert first(oa)["n_iter"] >= 20  # (not stopped at once: the comparison covers many iterations)


def test_float32_one_step_matches_torch():
    """float32: one step of 10 iterations within float32 rounding of torch's (later steps drift
    apart as torch's float32 runs drift from each other: the iteration amplifies rounding)."""
    a, b = mlp(torch.float32), mlp(torch.float32)
    x, y = data("mlp", torch.float32)
    oa, ob = torch.optim.LBFGS(a.parameters(), max_iter=10), ot.LBFGS(b.parameters(), max_iter=10)
    oa.step(closure(a, oa, x, y))
    ob.step(closure(b, ob, x, y))
    assert rel(a, b) <= 2e-5
    assert first(ob)["d"].dtype is torch.float32


def test_stops_like_torch_at_a_minimum():
    """tolerance_grad met at the first evaluation: one closure call, nothing moved (torch's rule)."""
    a = mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    before = [p.detach().clone() for p in a.parameters()]
    calls: list = []
    opt = ot.LBFGS(a.parameters(), tolerance_grad=1e3)
    opt.step(closure(a, opt, x, y, calls))
    assert len(calls) == 1
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), before))


def test_param_without_grad_untouched():
    """A param whose .grad stays None (unused) reads as zeros, as in torch: it does not move, and
    the others move as torch moves them."""
    a, b = mlp(torch.float64), mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    extra = [torch.nn.Parameter(torch.ones(3, dtype=torch.float64)) for _ in range(2)]
    oa = torch.optim.LBFGS([*a.parameters(), extra[0]], max_iter=5)
    ob = ot.LBFGS([*b.parameters(), extra[1]], max_iter=5)
    for _ in range(3):
        oa.step(closure(a, oa, x, y))
        ob.step(closure(b, ob, x, y))
    assert torch.equal(extra[1], torch.ones(3, dtype=torch.float64))
    assert rel(a, b) <= 1e-10


def test_state_in_torchs_layout():
    a, b = mlp(torch.float64), mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    oa, ob = torch.optim.LBFGS(a.parameters(), max_iter=4), ot.LBFGS(b.parameters(), max_iter=4)
    assert ob.state_dict() == oa.state_dict()  # before a step: no state, the same groups
    oa.step(closure(a, oa, x, y))
    ob.step(closure(b, ob, x, y))
    sa, sb = first(oa), first(ob)
    assert set(sb) == set(sa) | {"gram_sy", "gram_yy"}
    assert len(sb["old_dirs"]) == len(sa["old_dirs"]) == 3
    for k in ("d", "prev_flat_grad"):
        assert torch.allclose(sb[k], sa[k], rtol=1e-10, atol=1e-14)
    for u, v in zip(sb["old_dirs"] + sb["old_stps"], sa["old_dirs"] + sa["old_stps"]):
        assert torch.allclose(u, v, rtol=1e-10, atol=1e-14)
    assert [float(r) for r in sb["ro"]] == pytest.approx([float(r) for r in sa["ro"]], rel=1e-10)
    assert float(sb["H_diag"]) == pytest.approx(float(sa["H_diag"]), rel=1e-10)
    gram = torch.stack(sb["old_stps"]) @ torch.stack(sb["old_dirs"]).T
    assert torch.allclose(sb["gram_sy"], gram, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("direction", ["torch->optkern", "optkern->torch"])
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_checkpoints_cross_both_ways(direction, line_search_fn):
    """Three steps with one library, its state_dict (through torch.save) loaded into the other, three
    more steps: the same iterates as torch's run of all six."""
    ref, a, b = (mlp(torch.float64) for _ in range(3))
    x, y = data("mlp", torch.float64)
    kw = dict(max_iter=4, history_size=6, line_search_fn=line_search_fn)
    oref = torch.optim.LBFGS(ref.parameters(), **kw)
    first_cls, second_cls = (
        (torch.optim.LBFGS, ot.LBFGS) if direction == "torch->optkern" else (ot.LBFGS, torch.optim.LBFGS)
    )
    oa = first_cls(a.parameters(), **kw)
    for _ in range(3):
        oref.step(closure(ref, oref, x, y))
        oa.step(closure(a, oa, x, y))
    buf = io.BytesIO()
    torch.save(oa.state_dict(), buf)
    buf.seek(0)
    with torch.no_grad():
        for p, q in zip(b.parameters(), a.parameters()):
            p.copy_(q)
    ob = second_cls(b.parameters(), lr=0.5)  # lr: restored from the checkpoint
    ob.load_state_dict(torch.load(buf, weights_only=True))
    assert ob.param_groups[0]["lr"] == 1
    for _ in range(3):
        oref.step(closure(ref, oref, x, y))
        ob.step(closure(b, ob, x, y))
    assert rel(ref, b) <= 1e-10
    assert first(ob)["n_iter"] == first(oref)["n_iter"]


def test_deepcopy_continues_identically():
    a = mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    oa = ot.LBFGS(a.parameters(), max_iter=4, history_size=3)
    oa.step(closure(a, oa, x, y))
    b, ob = copy.deepcopy((a, oa))
    assert ob._params[0] is next(b.parameters())
    for _ in range(2):
        oa.step(closure(a, oa, x, y))
        ob.step(closure(b, ob, x, y))
    assert rel(a, b) == 0.0


def _reset(opt, p0, how):
    if how == "clear":
        opt.state.clear()
    elif how == "assign-empty":
        opt.state[p0] = {}
    elif how == "new-mapping":
        opt.state = collections.defaultdict(dict)
    elif how == "del":
        del opt.state[p0]
    elif how == "copy-of-itself":  # (new tensors, same values: a state taken from elsewhere)
        opt.state[p0] = {k: _cloned(v) for k, v in opt.state[p0].items()}


def _cloned(v):
    if isinstance(v, list):
        return [_cloned(t) for t in v]
    return v.clone() if isinstance(v, torch.Tensor) else v


@pytest.mark.parametrize("how", ["clear", "assign-empty", "new-mapping", "del", "copy-of-itself"])
def test_state_reset_or_replaced_between_steps_as_torch(how):
    """torch's ways to reset an optimizer's history (or hand it another state) between steps: the
    inner optimizer takes the state the user left; none starts afresh, as torch's LBFGS does."""
    ref, b = mlp(torch.float64), mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    oref = torch.optim.LBFGS(ref.parameters(), max_iter=5, history_size=4)
    ob = ot.LBFGS(b.parameters(), max_iter=5, history_size=4)
    for _ in range(2):
        oref.step(closure(ref, oref, x, y))
        ob.step(closure(b, ob, x, y))
    for o, m in ((oref, ref), (ob, b)):
        _reset(o, next(m.parameters()), how)
    for _ in range(2):
        oref.step(closure(ref, oref, x, y))
        ob.step(closure(b, ob, x, y))
    assert rel(ref, b) <= 1e-10
    assert (
        first(ob)["n_iter"] == oref.state[next(ref.parameters())]["n_iter"] == (20 if how == "copy-of-itself" else 10)
    )
    assert first(ob)["func_evals"] == oref.state[next(ref.parameters())]["func_evals"]


def test_bad_state_set_between_steps_refused_by_name_nothing_changed():
    """A state entry the inner optimizer cannot take: refused naming it, params and the inner
    history as they were (the state put back, training continues as if never touched)."""
    a, b = mlp(torch.float64), mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    oa = ot.LBFGS(a.parameters(), max_iter=3, history_size=3)
    ob = ot.LBFGS(b.parameters(), max_iter=3, history_size=3)
    for _ in range(2):
        oa.step(closure(a, oa, x, y))
        ob.step(closure(b, ob, x, y))
    p0 = next(b.parameters())
    good = ob.state[p0]
    before = [p.detach().clone() for p in b.parameters()]
    ob.state[p0] = {**good, "d": "junk"}
    with pytest.raises(TypeError, match=r"\['d'\]"):
        ob.step(closure(b, ob, x, y))
    assert all(torch.equal(p, q) for p, q in zip(before, b.parameters()))
    ob.state[p0] = good
    oa.step(closure(a, oa, x, y))
    ob.step(closure(b, ob, x, y))
    assert rel(a, b) == 0.0


def test_channels_last_params_match_torch_on_contiguous():
    """A channels_last CNN (torch's LBFGS cannot take one: it flattens with view(-1)) stepped in
    memory order matches torch on the same CNN in the default layout."""

    def make():
        torch.manual_seed(3)
        conv = torch.nn.Conv2d(2, 3, 3)
        return torch.nn.Sequential(conv, torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(27, 4)).double()

    a, b = make(), make().to(memory_format=torch.channels_last)
    assert not b[0].weight.is_contiguous()
    x = torch.randn(8, 2, 5, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = torch.arange(8) % 4
    oa, ob = torch.optim.LBFGS(a.parameters(), max_iter=10), ot.LBFGS(b.parameters(), max_iter=10)
    for _ in range(2):
        oa.step(closure(a, oa, x, y))
        ob.step(closure(b, ob, x.to(memory_format=torch.channels_last), y))
    assert rel(a, b) <= 1e-10
    assert not b[0].weight.is_contiguous() and first(ob)["n_iter"] == first(oa)["n_iter"] == 20


def test_lr_scheduler_and_tensor_lr():
    """An LR scheduler changes lr between steps as in torch; lr as a one-element tensor (filled in
    place by the scheduler) gives the same iterates as the same lr as a float. (torch itself differs
    there: its state's ``t`` is the lr tensor, so the next step's ``s = t d`` reads the scheduler's
    new lr instead of the one the step took.)"""
    a, b, c = (mlp(torch.float64) for _ in range(3))
    x, y = data("mlp", torch.float64)
    oa = torch.optim.LBFGS(a.parameters(), lr=0.5, max_iter=3)
    ob = ot.LBFGS(b.parameters(), lr=0.5, max_iter=3)
    oc = ot.LBFGS(c.parameters(), lr=torch.tensor(0.5), max_iter=3)
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5) for o in (oa, ob, oc)]
    for _ in range(3):
        for m, o in ((a, oa), (b, ob), (c, oc)):
            o.step(closure(m, o, x, y))
        for s in scheds:
            s.step()
    assert float(oc.param_groups[0]["lr"]) == 0.0625 and isinstance(oc.param_groups[0]["lr"], torch.Tensor)
    assert rel(a, b) <= 1e-10
    assert rel(b, c) == 0.0


# ---- bad input: refused by name, nothing written --------------------------------------------------


def _params(*shapes, dtype=torch.float64):
    return [torch.nn.Parameter(torch.ones(s, dtype=dtype)) for s in shapes]


@pytest.mark.parametrize(
    "make, kw, err, match",
    [
        (lambda: _params(3), dict(lr=-1.0), ValueError, "lr"),
        (lambda: _params(3), dict(lr=torch.ones(2)), ValueError, "lr"),
        (lambda: _params(3), dict(max_iter=0), ValueError, "max_iter"),
        (lambda: _params(3), dict(history_size=0), ValueError, "history_size"),
        (lambda: _params(3), dict(line_search_fn="armijo"), ValueError, "line_search_fn"),
        (lambda: [torch.ones(3, dtype=torch.int64)], {}, TypeError, r"^param_groups\[0\]\['params'\]\[0\]"),
        (lambda: _params(3) + _params(2, dtype=torch.float32), {}, TypeError, r"^param_groups\[0\]\['params'\]\[1\]"),
        (lambda: [{"params": _params(3)}, {"params": _params(2)}], {}, ValueError, "parameter groups"),
        (lambda: (lambda p: [p, p])(_params(3)[0]), {}, ValueError, "more than once"),
        (list, {}, ValueError, "empty"),
    ],
)
def test_bad_construction_refused(make, kw, err, match):
    with pytest.raises(err, match=match):
        ot.LBFGS(make(), **kw)


def test_second_group_refused():
    opt = ot.LBFGS(_params(3))
    with pytest.raises(ValueError, match="parameter groups"):
        opt.add_param_group({"params": _params(2)})


def test_closure_required():
    opt = ot.LBFGS(_params(3))
    with pytest.raises(TypeError, match="closure"):
        opt.step()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="closure"):
        opt.step(None)


def _quadratic(ps, grad_of=None, loss_of=None):
    """A closure of 0.5 |p|^2 whose grads (or loss) ``grad_of(i, g)`` / ``loss_of(n, loss)`` may spoil
    (a grad torch would not let ``p.grad =`` take is put in through ``p.grad.data``)."""
    calls = [0]

    def f():
        calls[0] += 1
        loss = sum(0.5 * (p * p).sum() for p in ps)
        for i, p in enumerate(ps):
            p.grad = p.detach().clone()
            if grad_of:
                g = grad_of(i, p.grad)
                if g.is_sparse:
                    p.grad = g  # (torch takes a sparse grad of a dense param)
                else:
                    p.grad.data = g
        return loss_of(calls[0], loss) if loss_of else loss

    return f


@pytest.mark.parametrize(
    "grad_of, err, match",
    [
        (lambda i, g: g.float() if i == 1 else g, ValueError, r"\['params'\]\[1\]\.grad"),
        (lambda i, g: g[:2] if i == 0 else g, ValueError, r"\['params'\]\[0\]\.grad"),
        (lambda i, g: g.t().contiguous().t() if i == 1 else g, ValueError, r"\[1\]\.grad: .*like its param"),
        (lambda i, g: torch.full_like(g, math.nan) if i == 1 else g, ValueError, "closure"),
    ],
)
def test_bad_grads_refused_params_untouched(grad_of, err, match):
    # (a sparse grad is read as its dense values since hunt 47f, as torch's LBFGS reads it: one of
    # another shape is still named, tests/test_hunt47f_torch_lbfgs_sparse.py)
    ps = _params(3, (4, 5))
    opt = ot.LBFGS(ps, max_iter=3)
    with pytest.raises(err, match=match):
        opt.step(_quadratic(ps, grad_of))
    assert all(torch.equal(p, torch.ones_like(p)) for p in ps)
    assert not opt.state  # (nothing stepped)


def test_nan_loss_mid_step_puts_params_back_to_the_last_iterate():
    """A NaN loss at a trial point: ValueError naming closure, params back where the last accepted
    iterate left them (the first evaluation's point here), the next step starts from there."""
    ps = _params(3, (4, 5))
    opt = ot.LBFGS(ps, max_iter=5, lr=0.5)
    with pytest.raises(ValueError, match="closure"):
        opt.step(_quadratic(ps, loss_of=lambda n, loss: loss * math.nan if n == 2 else loss))
    assert all(torch.equal(p, torch.ones_like(p)) for p in ps)
    opt.step(_quadratic(ps))
    assert all(float(p.detach().abs().max()) < 1.0 for p in ps)


def test_bad_checkpoint_refused_state_unchanged():
    a = mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    opt = ot.LBFGS(a.parameters(), max_iter=3)
    opt.step(closure(a, opt, x, y))
    sd = copy.deepcopy(opt.state_dict())
    before = copy.deepcopy(opt.state_dict())
    sd["state"][0]["old_dirs"][0] = sd["state"][0]["old_dirs"][0][:-1]
    sd["param_groups"][0]["lr"] = 0.25
    with pytest.raises(ValueError, match=r"\['old_dirs'\]\[0\]"):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert all(torch.equal(u, v) for u, v in zip(after["state"][0]["old_dirs"], before["state"][0]["old_dirs"]))
    with pytest.raises(TypeError, match="state_dict"):
        opt.load_state_dict([])  # type: ignore[arg-type]


# ---- CUDA ----------------------------------------------------------------------------------------


@gpu
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_cuda_matches_cpu(line_search_fn):
    a, b = mlp(torch.float64), mlp(torch.float64).cuda()
    x, y = data("mlp", torch.float64)
    kw = dict(max_iter=10, history_size=5, line_search_fn=line_search_fn)
    oa, ob = ot.LBFGS(a.parameters(), **kw), ot.LBFGS(b.parameters(), **kw)
    for _ in range(3):
        oa.step(closure(a, oa, x, y))
        ob.step(closure(b, ob, x.cuda(), y.cuda()))
    assert rel(a, b.cpu()) <= 1e-10
    assert first(ob)["d"].is_cuda and first(ob)["n_iter"] == first(oa)["n_iter"]


def test_bad_group_value_set_between_steps_named_by_its_group():
    ps = _params(3)
    opt = ot.LBFGS(ps, max_iter=2)
    opt.param_groups[0]["history_size"] = 0
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['history_size'\]"):
        opt.step(_quadratic(ps))
    assert torch.equal(ps[0], torch.ones(3, dtype=torch.float64)) and not opt.state
