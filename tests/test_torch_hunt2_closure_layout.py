"""optkern.torch.LBFGS / NewtonCG over params contiguous in another order of their dims
(channels_last), or whose dtype or layout changed between steps.

The inner optimizer keeps its flat vectors in the params' memory order; torch's LBFGS state (and
so a checkpoint) is in their logical order (``p.view(-1)`` concatenated), and so are the vectors
of ``hessian_operator``. These used to be mixed up silently: a torch checkpoint loaded into a
channels_last model (or the reverse), a ``model.to(memory_format=...)`` between steps, and every
Newton-CG curvature product on a channels_last model paired the elements of another order. A
``model.double()`` after the constructor raised an unnamed TypeError (torch goes on)."""

import copy

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

torch.set_num_threads(1)

_CL = torch.channels_last


def _model(channels_last=False):
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 2), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(3 * 3 * 3, 1)
    ).double()
    return m.to(memory_format=_CL) if channels_last else m


_G = torch.Generator().manual_seed(3)
_X = torch.randn(6, 2, 4, 4, generator=_G, dtype=torch.float64)
_Y = torch.randn(6, 1, generator=_G, dtype=torch.float64)


def _loss(m):
    return ((m(_X) - _Y) ** 2).mean()


def _steps(m, opt, n):
    def closure():
        opt.zero_grad()
        loss = _loss(m)
        loss.backward()
        return loss

    for _ in range(n):
        opt.step(closure)


def _flat(m):
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


def _copy_params(dst, src):
    with torch.no_grad():
        for a, b in zip(dst.parameters(), src.parameters()):
            a.copy_(b)


def _torch_reference(n_before, n_after, **kw):
    """torch.optim.LBFGS on the contiguous model: the params after n_before steps, its state dict
    then (a copy), and the params after n_after more."""
    m = _model()
    opt = torch.optim.LBFGS(m.parameters(), **kw)
    _steps(m, opt, n_before)
    mid, sd = copy.deepcopy(m), copy.deepcopy(opt.state_dict())
    _steps(m, opt, n_after)
    return mid, sd, _flat(m)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_torch_checkpoint_into_a_channels_last_model(line_search_fn):
    kw = dict(max_iter=3, history_size=4, line_search_fn=line_search_fn)
    mid, sd, want = _torch_reference(2, 2, **kw)
    m = _model(channels_last=True)
    _copy_params(m, mid)
    opt = ot.LBFGS(m.parameters(), **kw)
    opt.load_state_dict(sd)
    _steps(m, opt, 2)
    torch.testing.assert_close(_flat(m), want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("src_cl,dst_cl", [(True, False), (False, True), (True, True)])
def test_checkpoint_between_layouts_continues_as_torch(src_cl, dst_cl):
    """A channels_last run's checkpoint is in torch's order: it continues in a contiguous model
    (optkern's or torch's) as the uninterrupted torch run, and the reverse."""
    kw = dict(max_iter=3, history_size=4)
    _, _, want = _torch_reference(2, 2, **kw)
    src = _model(src_cl)
    opt = ot.LBFGS(src.parameters(), **kw)
    _steps(src, opt, 2)
    sd = copy.deepcopy(opt.state_dict())
    dst = _model(dst_cl)
    _copy_params(dst, src)
    again = ot.LBFGS(dst.parameters(), **kw)
    again.load_state_dict(sd)
    _steps(dst, again, 2)
    torch.testing.assert_close(_flat(dst), want, rtol=1e-9, atol=1e-12)
    if src_cl and not dst_cl:  # (torch itself cannot run channels_last params: its view(-1) fails)
        ref = _model()
        _copy_params(ref, src)
        topt = torch.optim.LBFGS(ref.parameters(), **kw)
        topt.load_state_dict(sd)
        _steps(ref, topt, 2)
        torch.testing.assert_close(_flat(ref), want, rtol=1e-9, atol=1e-12)


def test_memory_format_changed_between_steps():
    kw = dict(max_iter=3, history_size=4)
    _, _, want = _torch_reference(1, 2, **kw)
    m = _model()
    opt = ot.LBFGS(m.parameters(), **kw)
    _steps(m, opt, 1)
    m.to(memory_format=_CL)
    _steps(m, opt, 2)
    torch.testing.assert_close(_flat(m), want, rtol=1e-9, atol=1e-12)


def _float_closure(m, opt):
    x, y = _X.float(), _Y.float()

    def closure():
        opt.zero_grad()
        loss = ((m(x) - y) ** 2).mean()
        loss.backward()
        return loss

    return closure


def test_model_made_double_after_the_constructor_follows_as_torch():
    res = {}
    for mod in (torch.optim, ot):
        m = _model().float()
        opt = mod.LBFGS(m.parameters(), max_iter=3)
        m.double()
        _steps(m, opt, 2)
        res[mod] = _flat(m)
    torch.testing.assert_close(res[ot], res[torch.optim], rtol=1e-12, atol=1e-14)


def test_model_made_double_mid_run_continues_with_the_state_cast():
    """(torch's LBFGS then fails: its float32 history meets float64 grads in a dot; the state goes
    on cast, as torch's load_state_dict casts a float32 checkpoint into a float64 model)"""
    m = _model().float()
    opt = ot.LBFGS(m.parameters(), max_iter=3)
    opt.step(_float_closure(m, opt))
    sd = copy.deepcopy(opt.state_dict())
    ref = _model()
    _copy_params(ref, m)
    topt = torch.optim.LBFGS(ref.parameters(), max_iter=3)
    topt.load_state_dict(sd)
    _steps(ref, topt, 2)
    m.double()
    _steps(m, opt, 2)
    assert opt.state[m[0].weight]["d"].dtype is torch.float64
    # (to the float32 history's rounding: optkern keeps its float64 Gram matrices of the float32
    # vectors, torch recomputes ro from the cast ones)
    torch.testing.assert_close(_flat(m), _flat(ref), rtol=1e-6, atol=1e-9)


def test_param_resized_with_a_state_refused_by_name_state_kept():
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0, 0.5], dtype=torch.float64))
    opt = ot.LBFGS([w], max_iter=2)

    def closure():
        opt.zero_grad()
        loss = ((w - 1) ** 2).sum() + (w**4).sum()
        loss.backward()
        return loss

    opt.step(closure)
    before = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in opt.state[w].items()}
    w.data = torch.ones(4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\]: has 4 elements, 3"):
        opt.step(closure)
    assert torch.equal(opt.state[w]["d"], before["d"]) and opt.state[w]["n_iter"] == before["n_iter"]
    opt.state.clear()  # (a fresh start over the new size: allowed, as torch's reset)
    opt.step(closure)
    assert opt.state[w]["d"].numel() == 4


# ---- NewtonCG: hessian_operator's vectors are in the logical order -----------------------------


def _newton(m, precondition=False):
    params = list(m.parameters())
    kw = {}
    if precondition:  # (a diagonal in the logical order, as hessian_operator's vectors)
        kw["preconditioner"] = lambda: torch.cat([(p.detach() ** 2).reshape(-1) for p in params]).numpy()
    opt = ot.NewtonCG(m.parameters(), lambda: ot.hessian_operator(lambda: _loss(m), params), max_cg_iter=4, **kw)
    return opt


@pytest.mark.parametrize("precondition", [False, True])
def test_newton_cg_channels_last_steps_as_contiguous(precondition):
    out = {}
    for cl in (False, True):
        m = _model(cl)
        opt = _newton(m, precondition)
        _steps(m, opt, 3)
        out[cl] = (_flat(m), opt.last["rho"], opt.num_hvps)
    torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-9, atol=1e-12)
    assert out[True][1] == pytest.approx(out[False][1], rel=1e-8) and out[True][2] == out[False][2]


def test_newton_cg_checkpoint_between_layouts():
    want_m = _model()
    want = _newton(want_m)
    _steps(want_m, want, 3)
    src = _model(True)
    opt = _newton(src)
    _steps(src, opt, 1)
    sd = copy.deepcopy(opt.state_dict())
    dst = _model()
    _copy_params(dst, src)
    again = _newton(dst)
    again.load_state_dict(sd)
    _steps(dst, again, 2)
    torch.testing.assert_close(_flat(dst), _flat(want_m), rtol=1e-9, atol=1e-12)
