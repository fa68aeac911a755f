"""optkern.torch and inference tensors (made under ``torch.inference_mode()``), as torch.optim.

torch allows an in-place update of an inference tensor only inside inference mode: outside,
torch.optim's step (and clip_grad_norm_ / clip_grad_value_, LBFGS, SWA's ``n_averaged``) raises
RuntimeError "Inplace update to inference tensor outside InferenceMode is not allowed" -- after
it wrote. Inference grads are only read: fine anywhere. Inside inference mode every step works,
and the state it makes is made of inference tensors (refused by a later step outside).

Before: optkern.torch wrote inference params, state and grads in place outside inference mode
without a word (through NumPy views torch does not check), and a step inside inference mode of
any optimizer with a step count raised "Inference tensors do not track version counter" after
making the state (the view cache read the joined step counts' ``_version``).
"""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

INF = "Inplace update to inference tensor outside InferenceMode"
# (name, hyper-parameters, low-precision keywords) -- every first-order optimizer; AdagradNorm is
# optkern's only (compared with itself)
CASES = [
    ("SGD", dict(lr=0.1), {}),
    ("SGD", dict(lr=0.1, momentum=0.9), {}),
    ("Adagrad", dict(lr=0.1), {}),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True), {}),
    ("Adadelta", dict(lr=0.5), {}),
    ("Adam", dict(lr=0.01, amsgrad=True), {}),
    ("AdamW", dict(lr=0.01), {}),
    ("NAdam", dict(lr=0.01), {}),
    ("AdagradNorm", dict(lr=0.1), {}),
    ("Adam", dict(lr=0.01), dict(state_dtype="bfloat16")),
]
IDS = [f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)]


def _tensor(values, inference):
    if inference:
        with torch.inference_mode():
            return torch.tensor(values, dtype=torch.float32)
    return torch.tensor(values, dtype=torch.float32)


def _params(inference=(False, False), grad_inference=False):
    """Two params of different sizes, each with a grad."""
    ps = []
    for k, inf in enumerate(inference):
        p = _tensor([1.0 + k, -2.0, 0.5][: 2 + k], inf)
        p.grad = _tensor([0.3, -0.1, 0.7][: 2 + k], grad_inference)
        ps.append(p)
    return ps


def _make(mod, name, hp, lowp, params):
    """``mod.name`` over ``params``; torch's stand-in for optkern's own (AdagradNorm, low
    precision) is optkern's, stepped the same (outside inference mode where it is the reference)."""
    if mod is torch.optim and (name == "AdagradNorm" or lowp):
        mod = ot
    return getattr(mod, name)(params, **hp, **lowp) if mod is ot else getattr(mod, name)(params, **hp)


def _snapshot(opt, params):
    state = {
        i: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in opt.state[p].items()}
        for i, p in enumerate(params)
    }
    return [p.clone() for p in params], state


def _same(a, b):
    (pa, sa), (pb, sb) = a, b
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys(), i
        for k in sa[i]:
            x, y = sa[i][k], sb[i][k]
            assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, (i, k)


@pytest.mark.parametrize("name,hp,lowp", CASES, ids=IDS)
@pytest.mark.parametrize("which", [(True, False), (False, True), (True, True)])
def test_inference_param_refused_outside_nothing_written(name, hp, lowp, which):
    ps = _params(which)
    opt = _make(ot, name, hp, lowp, ps)
    before = _snapshot(opt, ps)
    with pytest.raises(RuntimeError, match=INF) as e:
        opt.step()
    k = which.index(True)
    assert f"param_groups[0]['params'][{k}]" in str(e.value)
    _same(before, _snapshot(opt, ps))


@pytest.mark.parametrize("name,hp,lowp", CASES, ids=IDS)
def test_inference_param_in_second_group_refused_first_group_untouched(name, hp, lowp):
    a, b = _params((False, True))
    opt = _make(ot, name, hp, lowp, [{"params": [a]}, {"params": [b], "lr": 0.05}])
    before = _snapshot(opt, [a, b])
    with pytest.raises(RuntimeError, match=INF) as e:
        opt.step()
    assert "param_groups[1]['params'][0]" in str(e.value)
    _same(before, _snapshot(opt, [a, b]))


@pytest.mark.parametrize("name,hp,lowp", CASES, ids=IDS)
@pytest.mark.parametrize("which", [(False, False), (True, True), (False, True)])
def test_steps_inside_inference_mode_as_torch(name, hp, lowp, which):
    """Inside inference mode, every step works (params normal or inference), as torch's does."""
    ours, theirs = _params(which), _params()
    o1, o2 = _make(ot, name, hp, lowp, ours), _make(torch.optim, name, hp, lowp, theirs)
    for _ in range(3):
        with torch.inference_mode():
            o1.step()
        o2.step()  # (the reference: outside)
    for x, y in zip(ours, theirs):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,hp,lowp", CASES, ids=IDS)
def test_state_made_inside_refused_outside(name, hp, lowp):
    """The first step inside inference mode makes inference state (torch's too): a step outside
    then refuses it, as torch's raises on it, and writes nothing; inside again, it steps."""
    if name == "Adagrad" or (name == "SGD" and "momentum" not in hp):
        pytest.skip("no state made by the step (Adagrad: at construction, outside)")
    ps = _params()
    opt = _make(ot, name, hp, lowp, ps)
    with torch.inference_mode():
        opt.step()
        opt.step()  # (the second from the cached views)
    before = _snapshot(opt, ps)
    with pytest.raises(RuntimeError, match=INF) as e:
        opt.step()
    assert "state[param_groups[0]['params'][0]]" in str(e.value)
    _same(before, _snapshot(opt, ps))
    with torch.inference_mode():
        opt.step()
    assert not torch.equal(ps[0], before[0][0])


@pytest.mark.parametrize("name,hp,lowp", CASES, ids=IDS)
def test_cached_multi_call_step_refuses_before_the_first_call(name, hp, lowp):
    """Group 0's state made outside, group 1's inside inference mode, each cached by two steps:
    the step of both outside (two calls, from the cached views) refuses group 1's before group
    0's call writes."""
    if name == "Adagrad" or (name == "SGD" and "momentum" not in hp):
        pytest.skip("no state made by the step (Adagrad: at construction, outside)")
    a, b = _params()
    ga, gb = a.grad, b.grad
    opt = _make(ot, name, hp, lowp, [{"params": [a]}, {"params": [b], "lr": 0.05}])
    b.grad = None
    opt.step()
    opt.step()
    a.grad, b.grad = None, gb
    with torch.inference_mode():
        opt.step()
        opt.step()
    a.grad = ga
    before = _snapshot(opt, [a, b])
    for _ in range(2):
        with pytest.raises(RuntimeError, match=INF) as e:
            opt.step()
        assert "state[param_groups[1]['params'][0]]" in str(e.value)
        _same(before, _snapshot(opt, [a, b]))
    with torch.inference_mode():
        opt.step()
    assert not torch.equal(a, before[0][0]) and not torch.equal(b, before[0][1])


@pytest.mark.parametrize("name,hp,lowp", CASES, ids=IDS)
def test_normal_state_steps_inside_then_outside(name, hp, lowp):
    """State made outside stays normal through a step inside inference mode (the cached step
    counts too): steps outside after it go on, as torch's."""
    ours, theirs = _params(), _params()
    o1, o2 = _make(ot, name, hp, lowp, ours), _make(torch.optim, name, hp, lowp, theirs)
    for k in range(4):
        if k == 1:
            with torch.inference_mode():
                o1.step()
        else:
            o1.step()
        o2.step()  # (the reference: outside)
    for x, y in zip(ours, theirs):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,hp,lowp", CASES[:9], ids=IDS[:9])
def test_inference_grads_are_read_as_torch(name, hp, lowp):
    ours, theirs = _params(grad_inference=True), _params(grad_inference=True)
    o1, o2 = _make(ot, name, hp, lowp, ours), _make(torch.optim, name, hp, lowp, theirs)
    for _ in range(2):
        o1.step()
        o2.step()
    for x, y in zip(ours, theirs):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_loaded_inference_state_refused_outside():
    p = torch.ones(3)
    p.grad = torch.ones(3)
    src = torch.optim.Adam([p])
    src.step()
    with torch.inference_mode():
        sd = {
            "state": {0: {k: v.clone() for k, v in src.state[p].items()}},
            "param_groups": src.state_dict()["param_groups"],
        }
    opt = ot.Adam([p])
    opt.load_state_dict(sd)
    before = _snapshot(opt, [p])
    with pytest.raises(RuntimeError, match=INF):
        opt.step()
    _same(before, _snapshot(opt, [p]))


@pytest.mark.parametrize("fn", ["norm", "value"])
def test_clip_refuses_inference_grads_outside(fn):
    p = torch.ones(3, requires_grad=True)
    with torch.inference_mode():
        p.grad = torch.full((3,), 10.0)
    clip = (lambda: ot.clip_grad_norm_([p], 1.0)) if fn == "norm" else (lambda: ot.clip_grad_value_([p], 1.0))
    with pytest.raises(RuntimeError, match=INF) as e:
        clip()
    assert "parameters[0].grad" in str(e.value)
    assert torch.equal(p.grad, torch.full((3,), 10.0))
    with torch.inference_mode():
        clip()
    assert p.grad.abs().max() <= 1.0 + 1e-6


def test_clip_inference_grads_of_torch_fallback_refused_before_writing():
    """Grads of two dtypes go to torch's own clip, which writes the first before it raises."""
    a, b = torch.ones(3, requires_grad=True), torch.ones(3, dtype=torch.float64, requires_grad=True)
    a.grad = torch.full((3,), 10.0)
    with torch.inference_mode():
        b.grad = torch.full((3,), 10.0, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=INF) as e:
        ot.clip_grad_norm_([a, b], 1.0)
    assert "parameters[1].grad" in str(e.value)
    assert torch.equal(a.grad, torch.full((3,), 10.0))


@pytest.mark.parametrize("kind", ["LBFGS", "NewtonCG"])
def test_closure_optimizers_refuse_inference_params_outside(kind):
    w = _tensor([3.0, -2.0], True)

    def fn():
        return ((w - 1) ** 2).sum()

    def closure():
        w.grad = 2 * (w.detach() - 1)
        return fn()

    if kind == "LBFGS":
        opt = ot.LBFGS([w], max_iter=3)
    else:
        opt = ot.NewtonCG([w], lambda: ot.hessian_operator(fn, [w]))
    with pytest.raises(RuntimeError, match=INF) as e:
        opt.step(closure)
    assert "param_groups[0]['params'][0]" in str(e.value)
    assert w.tolist() == [3.0, -2.0]
    if kind == "LBFGS":  # (inside inference mode it steps, as torch's)
        with torch.inference_mode():
            opt.step(closure)
        assert abs(w[0].item() - 1.0) < 1e-3


def test_sam_refuses_inference_params_outside():
    w = _tensor([3.0, -2.0], True)
    w.grad = torch.tensor([1.0, 1.0])
    opt = ot.SAM([w], ot.SGD, lr=0.1)
    with pytest.raises(RuntimeError, match=INF):
        opt.first_step()
    assert w.tolist() == [3.0, -2.0]
    with torch.inference_mode():
        opt.first_step()
        opt.second_step()
    assert w.tolist() != [3.0, -2.0]


def test_sam_backup_made_inside_is_made_anew_outside():
    """A step inside inference mode leaves inference backups; the next step outside (normal params)
    makes new ones, as the reference clones ``w`` every step."""
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = ot.SAM([w], ot.SGD, lr=0.1)
    w.grad = torch.tensor([1.0, 1.0])
    with torch.inference_mode():
        opt.first_step()
        opt.second_step()
    w.grad = torch.tensor([1.0, 1.0])
    opt.first_step()
    assert not opt._backups[id(w)].is_inference()
    opt.second_step()


def test_swa_made_inside_refused_outside_nothing_written():
    """An AveragedModel made inside inference mode has an inference ``n_averaged``: torch's update
    outside raises on it (after averaging); optkern's refuses before anything is written."""
    model = torch.nn.Linear(2, 2)
    with torch.inference_mode():
        avg = ot.AveragedModel(model)
    for _ in range(2):
        before = [t.clone() for t in avg.module.parameters()]
        n = avg.n_averaged.clone()
        with torch.no_grad():
            model.weight.add_(1.0)
        with pytest.raises(RuntimeError, match=INF) as e:
            avg.update_parameters(model)
        assert "n_averaged" in str(e.value)
        assert all(torch.equal(a, b) for a, b in zip(before, avg.module.parameters()))
        assert torch.equal(avg.n_averaged, n)
        with torch.inference_mode():
            avg.update_parameters(model)


def test_param_data_replaced_by_inference_tensor_refused():
    """``p.data = t`` (another memory: the cached views are made anew) with an inference ``t``."""
    a, p = _params()
    opt = ot.Adam([a, p], lr=0.01)
    opt.step()
    opt.step()
    with torch.inference_mode():
        t = torch.full((3,), 2.0)
    p.data = t
    before = _snapshot(opt, [a, p])
    with pytest.raises(RuntimeError, match=INF) as e:
        opt.step()
    assert "param_groups[0]['params'][1]" in str(e.value)
    _same(before, _snapshot(opt, [a, p]))


@pytest.mark.parametrize("inference_param", [False, True])
def test_master_weights_half_params(inference_param):
    """bfloat16 params through a float32 master copy: inference params, or the master copy made by
    a step inside inference mode, refused outside (nothing written); inside, the step goes on."""
    with torch.inference_mode(inference_param):
        p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.bfloat16)
    p.grad = torch.tensor([0.3, -0.1, 0.7], dtype=torch.bfloat16)
    opt = ot.AdamW([p], lr=0.01, master_weights=True)
    if not inference_param:
        with torch.inference_mode():
            opt.step()
    before = _snapshot(opt, [p])
    with pytest.raises(RuntimeError, match=INF):
        opt.step()
    _same(before, _snapshot(opt, [p]))
    with torch.inference_mode():
        opt.step()
    assert float(opt.state[p]["step"]) == (1.0 if inference_param else 2.0)


def test_adagrad_state_made_outside_stepped_inside_first_then_outside():
    """Adagrad makes its state at construction (outside): steps inside inference mode first (the
    step counts joined there, into a normal tensor), then outside, as torch's."""
    ours, theirs = _params(), _params()
    o1, o2 = ot.Adagrad(ours, lr=0.1), torch.optim.Adagrad(theirs, lr=0.1)
    for k in range(4):
        with torch.inference_mode(k < 2):
            o1.step()
            o2.step()
    for x, y in zip(ours, theirs):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    assert not o1.state[ours[0]]["step"].is_inference()
    assert float(o1.state[ours[0]]["step"]) == 4.0
