"""Complex tensors in the rest of optkern.torch, against torch: clip_grad_norm_ / clip_grad_value_,
LBFGS, SAM, AveragedModel; and what is refused (by name, before anything is written): conjugated
views, a grad whose dtype is not its param's, real state for a complex param, low-precision storage,
inference tensors outside inference mode, ASAM and Hessian operators over complex params."""

import copy

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from optkern.benchmarks.sam_reference import ReferenceSAM  # noqa: E402 (after the torch skip)

torch.set_num_threads(1)
C64, C128 = torch.complex64, torch.complex128


def randn(*shape, dtype=C128, seed=0):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def rel(a, b) -> float:
    return max(float(((x - y).abs().max() / x.abs().max()).detach()) for x, y in zip(a, b))


# ---- clipping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtypes", [(C128, C128), (C128, torch.float64), (C64, torch.float32)], ids=["c128", "c128+f64", "c64+f32"]
)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_complex_as_torch(dtypes, norm_type):
    grads = [randn(7, 3, dtype=dtypes[0], seed=1), randn(5, dtype=dtypes[1], seed=2)]
    want_ps = [torch.zeros_like(g, requires_grad=True) for g in grads]
    mine_ps = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, q, g in zip(want_ps, mine_ps, grads):
        p.grad, q.grad = g.clone(), g.clone()
    want = torch.nn.utils.clip_grad_norm_(want_ps, 0.5, norm_type)
    mine = ot.clip_grad_norm_(mine_ps, 0.5, norm_type)
    assert mine.dtype == want.dtype and not mine.is_complex()
    tol = 1e-12 if dtypes[1] == torch.float64 else 1e-6
    assert float(abs(mine - want)) <= tol * float(want)
    assert rel([p.grad for p in want_ps], [p.grad for p in mine_ps]) <= tol


def test_clip_grad_norm_complex_unbounded_and_conjugated_grads_as_torch():
    g = randn(6, seed=3)
    a, b = torch.zeros(6, dtype=C128, requires_grad=True), torch.zeros(6, dtype=C128, requires_grad=True)
    a.grad, b.grad = g.conj(), g.conj()  # (torch's foreach scaling refuses a conjugated grad: so does this)
    with pytest.raises(RuntimeError, match="conjugate") as want:
        torch.nn.utils.clip_grad_norm_([a], 0.1)
    with pytest.raises(RuntimeError, match="conjugate") as mine:
        ot.clip_grad_norm_([b], 0.1)
    assert str(mine.value) == str(want.value)
    b.grad = g.clone()
    assert torch.allclose(ot.clip_grad_norm_([b], float("inf")), g.abs().norm(), rtol=1e-12)
    assert torch.equal(b.grad, g)
    inf = torch.tensor([1 + 2j, complex(float("inf"), 0.0), 3j] * 2, dtype=C128)
    a.grad, b.grad = inf.clone(), inf.clone()
    assert torch.equal(ot.clip_grad_norm_([b], float("inf")), torch.nn.utils.clip_grad_norm_([a], float("inf")))
    assert torch.view_as_real(b.grad).isnan().all() and torch.view_as_real(a.grad).isnan().all()  # (NaN + NaN j)


def test_clip_grad_value_complex_raises_as_torch():
    p = torch.zeros(3, dtype=C64, requires_grad=True)
    p.grad = randn(3, dtype=C64)
    with pytest.raises(NotImplementedError, match="complex"):
        torch.nn.utils.clip_grad_value_([p], 0.1)
    before = p.grad.clone()
    with pytest.raises(NotImplementedError, match="complex"):
        ot.clip_grad_value_([p], 0.1)
    assert torch.equal(p.grad, before)


# ---- LBFGS --------------------------------------------------------------------------------------


def lbfgs_problem(dtype=C128, channels_last=False):
    """Complex least squares with a real param beside: ||A z - y||^2 + ||s - 1||^2 (s real)."""
    real = torch.float64 if dtype == C128 else torch.float32
    a, y = randn(12, 2 * 3 * 2 * 2, dtype=dtype, seed=4), randn(12, dtype=dtype, seed=5)
    z = randn(2, 3, 2, 2, dtype=dtype, seed=6) * 0.1
    if channels_last:
        z = z.to(memory_format=torch.channels_last)
    s = torch.zeros(4, dtype=real)
    return [z.requires_grad_(), s.requires_grad_()], (a, y)


def lbfgs_closure(opt, params, data):
    z, s = params
    a, y = data

    def closure():
        opt.zero_grad()
        loss = ((a @ z.reshape(-1) - y).abs() ** 2).sum() + ((s - 1) ** 2).sum()
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_lbfgs_complex_matches_torch(line_search_fn, channels_last):
    out, losses = [], []
    for cls in (torch.optim.LBFGS, ot.LBFGS):
        params, data = lbfgs_problem(channels_last=channels_last and cls is ot.LBFGS)
        opt = cls(params, lr=0.5, max_iter=8, history_size=5, line_search_fn=line_search_fn)
        closure = lbfgs_closure(opt, params, data)
        losses.append([float(opt.step(closure).detach()) for _ in range(3)])
        out.append((params, opt))
    (tp, topt), (mp, mopt) = out
    assert rel([p.detach() for p in tp], [p.detach() for p in mp]) <= 1e-9
    assert losses[1] == pytest.approx(losses[0], rel=1e-9)
    # the state in torch's layout (flat real vectors: the complex param's real view, logical order)
    tsd, msd = topt.state_dict()["state"][0], mopt.state_dict()["state"][0]
    for k in ("d", "prev_flat_grad"):
        assert tsd[k].dtype == msd[k].dtype == torch.float64 and tsd[k].shape == msd[k].shape
        assert rel([tsd[k]], [msd[k]]) <= 1e-8
    # and it continues in torch identically (to rounding)
    params, data = lbfgs_problem()
    with torch.no_grad():
        for p, q in zip(params, mp):
            p.copy_(q)
    cont = torch.optim.LBFGS(params, lr=0.5, max_iter=8, history_size=5, line_search_fn=line_search_fn)
    cont.load_state_dict(mopt.state_dict())
    cont.step(lbfgs_closure(cont, params, data))
    topt.step(lbfgs_closure(topt, tp, data))
    assert rel([p.detach() for p in tp], [p.detach() for p in params]) <= 1e-8


def test_lbfgs_complex64_with_float32_params():
    out = []
    for cls in (torch.optim.LBFGS, ot.LBFGS):
        params, data = lbfgs_problem(C64)
        opt = cls(params, lr=0.5, max_iter=6)
        opt.step(lbfgs_closure(opt, params, data))
        out.append([p.detach() for p in params])
    assert rel(out[0], out[1]) <= 1e-4


def test_newton_cg_steps_the_real_views():
    """f = sum(a x^2) / 2 - b.x over x, the real view of complex z, with the exact curvature diag(a)
    over the real view's flat vector (re, im interleaved): one undamped step lands on b / a."""
    import numpy as np

    from optkern import hessian

    rng = np.random.default_rng(0)
    a_np, b_np = rng.uniform(0.5, 3.0, 40), rng.standard_normal(40)
    a, b = torch.from_numpy(a_np).reshape(20, 2), torch.from_numpy(b_np).reshape(20, 2)
    z = torch.zeros(20, dtype=C128, requires_grad=True)
    opt = ot.NewtonCG([z], hessian.from_hvp(lambda v: a_np * v, 40), damping=1e-8, min_damping=1e-10, cg_tol=1e-12)

    def f():
        opt.zero_grad()
        x = torch.view_as_real(z)
        loss = 0.5 * (a * x * x).sum() - (b * x).sum()
        loss.backward()
        return loss

    opt.step(f)
    assert torch.allclose(torch.view_as_real(z.detach()), b / a, rtol=1e-7, atol=0)


# ---- SAM, AveragedModel --------------------------------------------------------------------------


def test_sam_complex_matches_the_reference():
    a, y = randn(10, 4, seed=7), randn(10, seed=8)
    out = []

    def loss(z, s):
        return ((a @ z - y).abs() ** 2).sum() + ((s - 1) ** 2 * (1 + z.real.sum() ** 2)).sum()

    for cls in (ReferenceSAM, ot.SAM):
        z = randn(4, seed=9).requires_grad_()
        s = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        opt = cls([z, s], torch.optim.SGD, rho=0.05, lr=0.05, momentum=0.9)
        for _ in range(10):
            loss(z, s).backward()
            opt.first_step(zero_grad=True)
            loss(z, s).backward()
            opt.second_step(zero_grad=True)
        out.append([z.detach(), s.detach()])
    assert rel(out[0], out[1]) <= 1e-12


def test_asam_refuses_complex_params_by_name():
    z = torch.zeros(3, dtype=C128, requires_grad=True)
    z.grad = randn(3)
    opt = ot.SAM([torch.zeros(2, dtype=torch.float64), z], torch.optim.SGD, adaptive=True, lr=0.1)
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[1\]: complex .* adaptive=True"):
        opt.first_step()
    assert torch.equal(z, torch.zeros(3, dtype=C128))


@pytest.mark.parametrize("ema", [False, True], ids=["swa", "ema"])
def test_averaged_model_complex_as_torch(ema):
    model = torch.nn.Linear(3, 2, dtype=C64)
    kw = dict(multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9)) if ema else {}
    mkw = dict(multi_avg_fn=ot.get_ema_multi_avg_fn(0.9)) if ema else {}
    want, mine = torch.optim.swa_utils.AveragedModel(model, **kw), ot.AveragedModel(model, **mkw)
    for i in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(randn(*p.shape, dtype=C64, seed=10 + i))
        want.update_parameters(model)
        mine.update_parameters(model)
    assert rel(list(want.parameters()), list(mine.parameters())) <= 1e-6
    assert all(p.dtype == C64 for p in mine.parameters())
    assert len(mine._fused_plan[1][0]) == 2  # (both complex64 tensors in the fused pass)


# ---- refused: by name, nothing written ---------------------------------------------------------


def _adam_two_groups():
    """A real group stepped first (its own call) and a complex one: a late refusal would have written."""
    r, z = torch.ones(3, requires_grad=True), torch.ones(3, dtype=C64, requires_grad=True)
    opt = ot.Adam([{"params": [r]}, {"params": [z]}], lr=0.1)
    r.grad, z.grad = torch.ones(3), torch.ones(3, dtype=C64)
    opt.step()  # (state made)
    opt.step()  # (the step's checks cached: the next one takes the fast path)
    return r, z, opt


def _snapshot(opt):
    ps = [p for g in opt.param_groups for p in g["params"]]
    return [p.detach().clone() for p in ps], copy.deepcopy(opt.state_dict()["state"])


def _unchanged(opt, snap):
    ps = [p for g in opt.param_groups for p in g["params"]]
    assert all(torch.equal(p, q) for p, q in zip(ps, snap[0]))
    now = opt.state_dict()["state"]
    assert all(torch.equal(now[k][n], v) for k, e in snap[1].items() for n, v in e.items())


@pytest.mark.parametrize("groups", [1, 2])
def test_conjugated_grad_refused_by_name(groups):
    r, z, opt = _adam_two_groups()
    if groups == 1:
        opt = ot.Adam([z], lr=0.1)
    snap = _snapshot(opt)
    z.grad = randn(3, dtype=C64).conj()
    with pytest.raises(ValueError, match=r"\['params'\]\[0\]\.grad: a conjugated view"):
        opt.step()
    _unchanged(opt, snap)
    z.grad = z.grad.resolve_conj()
    opt.step()


def test_conjugated_param_and_state_refused_by_name():
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[1\]: a conjugated view"):
        ot.SGD([torch.ones(2), randn(3).conj().requires_grad_()], lr=0.1)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\]: a conjugated view"):
        ot.LBFGS([randn(3).conj().requires_grad_()])
    r, z, opt = _adam_two_groups()
    opt.state[z]["exp_avg"] = opt.state[z]["exp_avg"].conj()
    snap = _snapshot(opt)
    with pytest.raises(ValueError, match=r"state\[param_groups\[1\]\['params'\]\[0\]\]\['exp_avg'\]: a conjugated"):
        opt.step()
    _unchanged(opt, snap)


def test_conjugated_state_in_a_checkpoint_is_loaded_as_its_values():
    r, z, opt = _adam_two_groups()
    sd = opt.state_dict()
    shown = sd["state"][1]["exp_avg"].clone()
    sd["state"][1]["exp_avg"] = shown.conj().conj()  # (values shown: the same; a lazy bit set twice)
    sd["state"][1]["exp_avg_sq"] = sd["state"][1]["exp_avg_sq"].conj()
    opt.load_state_dict(sd)
    assert not opt.state[z]["exp_avg_sq"].is_conj()
    assert torch.equal(opt.state[z]["exp_avg_sq"], sd["state"][1]["exp_avg_sq"].resolve_conj())
    opt.step()


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("which", ["complex grad, real param", "real grad, complex param"])
def test_grad_of_another_kind_refused_by_name(groups, which):
    r, z, opt = _adam_two_groups()
    if groups == 1:
        opt = ot.Adam([r, z], lr=0.1)
        opt.step()
    snap = _snapshot(opt)
    p = r if which.endswith("real param") else z
    p.grad_dtype = None  # (torch refuses a grad of another dtype otherwise)
    p.grad = torch.ones(3, dtype=C64) if p is r else torch.ones(3)
    j = 0 if groups == 2 or p is r else 1
    with pytest.raises(ValueError, match=rf"\['params'\]\[{j}\]\.grad: .* does not match its param"):
        opt.step()
    _unchanged(opt, snap)


def test_lbfgs_grad_of_another_kind_refused_by_name():
    params, data = lbfgs_problem()
    opt = ot.LBFGS(params)
    z = params[0]
    z.grad_dtype = None

    def closure():
        z.grad = torch.zeros(z.shape, dtype=torch.float64)
        return torch.tensor(1.0)

    with pytest.raises(ValueError, match=r"\['params'\]\[0\]\.grad: .* does not match its param"):
        opt.step(closure)


@pytest.mark.parametrize("bad", ["real state", "complex state for a real param"])
def test_state_of_another_kind_refused_on_load(bad):
    r, z, opt = _adam_two_groups()
    sd = opt.state_dict()
    key, match = (1, "expected a dense complex tensor") if bad == "real state" else (0, "expected a dense floating")
    sd["state"][key]["exp_avg"] = torch.zeros(3, dtype=torch.float32 if key else C64)
    snap = _snapshot(opt)
    with pytest.raises(TypeError, match=rf"state_dict\['state'\]\[{key}\]\['exp_avg'\]: {match}"):
        opt.load_state_dict(sd)
    _unchanged(opt, snap)


@pytest.mark.parametrize("lowp", [dict(master_weights=True), dict(state_dtype="bfloat16"), dict(state_dtype="int8")])
def test_low_precision_refuses_complex_by_name(lowp):
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[1\]: complex .* low-precision"):
        ot.AdamW([torch.zeros(3, requires_grad=True), torch.zeros(3, dtype=C64, requires_grad=True)], **lowp)


def test_hessian_operator_refuses_complex_by_name():
    z = torch.zeros(3, dtype=C128, requires_grad=True)
    with pytest.raises(TypeError, match=r"params\[0\]: complex tensors are not supported in a Hessian"):
        ot.hessian_operator(lambda: (z.abs() ** 2).sum(), [z])


def test_negated_complex_grad_refused_by_name():
    z = torch.ones(3, dtype=C128, requires_grad=True)
    opt = ot.Adam([z], lr=0.1)
    z.grad = torch._neg_view(randn(3))
    with pytest.raises(ValueError, match=r"\.grad: a negated view"):
        opt.step()
    assert torch.equal(z, torch.ones(3, dtype=C128)) and not opt.state[z]


def test_inference_complex_params_as_torch():
    with torch.inference_mode():
        z = randn(3)
    opt = ot.Adam([z], lr=0.1)
    z.grad = randn(3, seed=1)
    with pytest.raises(RuntimeError, match=r"param_groups\[0\]\['params'\]\[0\]: Inplace update to inference"):
        opt.step()
    assert torch.equal(z, randn(3))
    ref = randn(3)
    ref_opt = torch.optim.Adam([ref], lr=0.1, foreach=False)
    ref.grad = randn(3, seed=1)
    with torch.inference_mode():
        opt.step()
        ref_opt.step()
    assert torch.allclose(z, ref, rtol=1e-12, atol=0)
