"""optkern.torch: drop-in torch.optim optimizers on optkern's kernels, against torch.optim itself."""

import copy

import pytest

import optkern.optim

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from torch_ieee_sqrt import ieee_sqrt  # noqa: E402 (after the torch skip)

# Tiny models: one torch thread. Two OpenMP teams (torch's spinning one and optkern's) on a loaded
# 2-core machine slow each step down by orders of magnitude.
torch.set_num_threads(1)

from torch_common import CASES, IDS, cnn, data, mlp  # noqa: E402 (after the torch skip)


def train(model, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def rel_diff(a_params, b_params) -> float:
    return max(
        float((a - b).detach().abs().max() / a.detach().abs().max().clamp_min(1e-30))
        for a, b in zip(a_params, b_params)
    )


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_trains_like_torch_float64(name, kw, kind, float64_default):
    make = mlp if kind == "mlp" else cnn
    x, y = data(kind, torch.float64)
    ref, mine = make(torch.float64), make(torch.float64)
    train(ref, getattr(torch.optim, name)(ref.parameters(), **kw), x, y, 300)
    train(mine, getattr(ot, name)(mine.parameters(), **kw), x, y, 300)
    assert rel_diff(list(ref.parameters()), list(mine.parameters())) <= 1e-12


def _run_float32(opt_factory, steps=20):
    model = mlp(torch.float32)
    x, y = data("mlp", torch.float32)
    opt = opt_factory(model.parameters())
    train(model, opt, x, y, steps)
    return [p.detach().clone() for p in model.parameters()], opt


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_float32_trains_bitwise_like_torch_with_ieee_sqrt(name, kw):
    # 20 steps of a real model (torch computes every gradient from params optkern updated): with
    # the one rounding the libraries do not share made equal (torch's CPU sqrt is not correctly
    # rounded, tests/torch_ieee_sqrt.py), optkern.torch is torch.optim's for-loop bit for bit.
    with ieee_sqrt():
        want, _ = _run_float32(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw))
    mine, _ = _run_float32(lambda ps: getattr(ot, name)(ps, **kw))
    for w, m in zip(want, mine):
        assert torch.equal(w, m)


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_float32_close_to_torch_as_torch_is_to_itself(name, kw):
    # Against torch's own sqrt: torch's implementations (for-loop vs foreach, vs fused where torch
    # has a CPU fused kernel, vs itself with an IEEE sqrt) differ by rounding; ours may differ from
    # the for-loop by at most 4x the largest of those gaps.
    loop, _ = _run_float32(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw))
    others = [_run_float32(lambda ps: getattr(torch.optim, name)(ps, foreach=True, **kw))[0]]
    if name in ("SGD", "Adagrad", "Adam", "AdamW"):
        others.append(_run_float32(lambda ps: getattr(torch.optim, name)(ps, fused=True, **kw))[0])
    with ieee_sqrt():
        others.append(_run_float32(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw))[0])
    mine, _ = _run_float32(lambda ps: getattr(ot, name)(ps, **kw))
    torch_spread = max(rel_diff(loop, o) for o in others)
    assert rel_diff(loop, mine) <= 4 * torch_spread


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_param_without_grad_is_skipped(name, kw):
    model = mlp(torch.float32)
    frozen = model[2].bias
    before = frozen.detach().clone()
    opt = getattr(ot, name)(model.parameters(), **kw)
    x, y = data("mlp", torch.float32)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        frozen.grad = None
        opt.step()
    assert torch.equal(frozen.detach(), before)
    if name != "Adagrad":  # torch's Adagrad creates every state at construction; it stays untouched
        assert not opt.state[frozen]
    else:
        assert float(opt.state[frozen]["step"]) == 0 and torch.all(
            opt.state[frozen]["sum"] == kw["initial_accumulator_value"]
        )


@pytest.mark.parametrize("direction", ["torch->optkern", "optkern->torch"])
@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_checkpoint_crosses_both_ways(name, kw, direction, float64_default):
    x, y = data("mlp", torch.float64)
    first, second = (torch.optim, ot) if direction == "torch->optkern" else (ot, torch.optim)
    ref = mlp(torch.float64)
    ref_opt = getattr(first, name)(ref.parameters(), **kw)
    train(ref, ref_opt, x, y, 7)
    model = copy.deepcopy(ref)
    opt = getattr(second, name)(model.parameters(), **kw)
    opt.load_state_dict(copy.deepcopy(ref_opt.state_dict()))  # torch shares tensors otherwise
    train(ref, ref_opt, x, y, 9)
    train(model, opt, x, y, 9)
    assert rel_diff(list(ref.parameters()), list(model.parameters())) <= 1e-12


def test_adagrad_norm_not_in_torch_trains_and_round_trips():
    model = mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    opt = ot.AdagradNorm(model.parameters(), lr=0.5, b0=0.1)
    train(model, opt, x, y, 5)
    sd = opt.state_dict()
    b_sq = float(sd["state"][0]["b_sq"])
    assert b_sq > 0.1**2
    other = copy.deepcopy(model)
    opt2 = ot.AdagradNorm(other.parameters(), lr=0.5, b0=0.1)
    opt2.load_state_dict(copy.deepcopy(sd))
    train(model, opt, x, y, 4)
    train(other, opt2, x, y, 4)
    assert rel_diff(list(model.parameters()), list(other.parameters())) == 0.0


def test_adagrad_norm_b_sq_loads_in_float64_for_float32_params():
    model = mlp(torch.float32)
    x, y = data("mlp", torch.float32)
    opt = ot.AdagradNorm(model.parameters(), lr=0.5, b0=0.1)
    train(model, opt, x, y, 3)
    sd = copy.deepcopy(opt.state_dict())
    opt2 = ot.AdagradNorm(copy.deepcopy(model).parameters(), lr=0.5, b0=0.1)
    opt2.load_state_dict(copy.deepcopy(sd))  # torch's loader casts state to the param's dtype
    for i, p in enumerate(opt2.param_groups[0]["params"]):
        b = opt2.state[p]["b_sq"]
        assert b.dtype == torch.float64 and torch.equal(b, sd["state"][i]["b_sq"])


def test_closure_and_loss():
    model = mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    opt = ot.Adam(model.parameters(), lr=1e-2)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    losses = [float(opt.step(closure).detach()) for _ in range(30)]
    assert losses[-1] < losses[0]


def test_param_groups_and_scheduler():
    model = mlp(torch.float64)
    opt = ot.SGD(
        [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[2].parameters()}], lr=0.01, momentum=0.9
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)
    x, y = data("mlp", torch.float64)
    for _ in range(4):
        train(model, opt, x, y, 1)
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.025, 0.0025])


@pytest.mark.parametrize("p_norm", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_matches_torch(p_norm):
    a, b = mlp(torch.float64), mlp(torch.float64)
    x, y = data("mlp", torch.float64)
    for m in (a, b):
        torch.nn.functional.cross_entropy(m(x), y).backward()
    ref = torch.nn.utils.clip_grad_norm_(a.parameters(), 0.05, p_norm)
    mine = ot.clip_grad_norm_(b.parameters(), 0.05, p_norm)
    assert isinstance(mine, torch.Tensor) and mine.dtype == torch.float64 and mine.shape == ()
    assert float(mine) == pytest.approx(float(ref), rel=1e-12)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-12, atol=0)
    ot.clip_grad_value_(b.parameters(), 1e-3)
    assert max(float(p.grad.abs().max()) for p in b.parameters()) <= 1e-3


def test_bad_input_is_named():
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\]: expected float32 or float64"):
        ot.Adam([torch.zeros(3, dtype=torch.float16, requires_grad=True)])
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\]: tensor must be contiguous"):
        ot.Adam([torch.zeros(4, 6)[:, ::2].requires_grad_()])
    ot.Adam([torch.zeros(4, 3).t().requires_grad_()])  # dense in another dim order: stepped in memory order
    with pytest.raises(ValueError, match=r"param_groups\[0\]: .*lr"):
        ot.Adam([torch.zeros(3, requires_grad=True)], lr=-1.0)
    with pytest.raises(ValueError, match=r"betas"):
        ot.AdamW([torch.zeros(3, requires_grad=True)], betas=(1.5, 0.9))
    p = torch.zeros(3, requires_grad=True)
    opt = ot.SGD([p], lr=0.1)
    p.grad_dtype = None  # torch refuses a float64 grad on a float32 param otherwise
    p.grad = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\.grad: .* does not match its param"):
        opt.step()
    assert torch.all(p == 0)


def test_cpu_views_are_zero_copy():
    from optkern.torch import _views

    t = torch.arange(6, dtype=torch.float32)
    v = _views.view(t)
    v[0] = 42.0
    assert float(t[0]) == 42.0 and v.ctypes.data == t.data_ptr()


@pytest.mark.spawns
def test_import_optkern_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, optkern, optkern.optim, optkern.hessian; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


def _train_masked(model, opt, x, y, masks):
    """Train with the grads of the params whose index is in ``masks[step]`` set to None."""
    params = list(model.parameters())
    for mask in masks:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        for i in mask:
            params[i].grad = None
        opt.step()


# which params have no grad, step by step: the run layout changes, returns, changes again
MASKS = [(), (1,), (1,), (), (0, 3), (), (), (2,), (0, 1, 2, 3), ()]


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_changing_none_grads_follow_torch(name, kw, float64_default):
    x, y = data("mlp", torch.float64)
    ref, mine = mlp(torch.float64), mlp(torch.float64)
    _train_masked(ref, getattr(torch.optim, name)(ref.parameters(), foreach=False, **kw), x, y, MASKS)
    opt = getattr(ot, name)(mine.parameters(), **kw)
    _train_masked(mine, opt, x, y, MASKS)
    assert rel_diff(list(ref.parameters()), list(mine.parameters())) <= 1e-12
    if "step" in opt.state[next(mine.parameters())]:  # per-param step counts, as torch keeps them
        assert [float(opt.state[p]["step"]) for p in mine.parameters()] == [8.0, 7.0, 8.0, 8.0]


def test_layout_follows_load_state_dict_add_param_group_and_new_memory(float64_default):
    x, y = data("mlp", torch.float64)
    ref, mine = mlp(torch.float64), mlp(torch.float64)
    ref_opt = torch.optim.Adam(list(ref.parameters())[:2], lr=1e-2, foreach=False)
    opt = ot.Adam(list(mine.parameters())[:2], lr=1e-2)
    for model, o in ((ref, ref_opt), (mine, opt)):
        _train_masked(model, o, x, y, MASKS[:3])
        o.add_param_group({"params": list(model.parameters())[2:], "lr": 5e-3})  # a new group mid-training
        _train_masked(model, o, x, y, MASKS[3:6])
    assert rel_diff(list(ref.parameters()), list(mine.parameters())) <= 1e-12
    # state replaced by a checkpoint: the next step must use the loaded tensors, not cached views
    sd = copy.deepcopy(ref_opt.state_dict())
    opt.load_state_dict(copy.deepcopy(sd))
    ref_opt.load_state_dict(sd)
    # a param given new memory (p.data = ...): the next step must update the new tensor
    for model in (ref, mine):
        model[0].weight.data = model[0].weight.data.clone()
    for model, o in ((ref, ref_opt), (mine, opt)):
        _train_masked(model, o, x, y, MASKS[6:])
    assert rel_diff(list(ref.parameters()), list(mine.parameters())) <= 1e-12


def test_state_layout_comes_from_optkern_optim():
    # the adapter's state names and initial values are optkern.optim's, in torch tensors
    import optkern.optim as O

    for name, kw in CASES:
        model = mlp(torch.float32)
        opt = getattr(ot, name)(model.parameters(), **kw)
        train(model, opt, *data("mlp", torch.float32), 1)
        core = getattr(O, name)([p.detach().numpy().copy() for p in model.parameters()], **kw)
        core.step([p.grad.numpy() for p in model.parameters()])
        for p, q in zip(model.parameters(), core.param_groups[0]["params"]):
            assert set(opt.state[p]) == set(core.state.get(q, {})), name


def test_sgd_momentum_switched_on_mid_training(float64_default):
    x, y = data("mlp", torch.float64)
    ref, mine = mlp(torch.float64), mlp(torch.float64)
    opts = [torch.optim.SGD(ref.parameters(), lr=0.05), ot.SGD(mine.parameters(), lr=0.05)]
    for model, opt in zip((ref, mine), opts):
        train(model, opt, x, y, 3)
        opt.param_groups[0]["momentum"] = 0.9  # buffers made from the next grads
        train(model, opt, x, y, 3)
    assert rel_diff(list(ref.parameters()), list(mine.parameters())) <= 1e-12


def test_clip_falls_back_to_torch_with_a_generator_and_for_other_dtypes():
    # mixed dtypes through model.parameters() (a generator): torch's implementation must still see
    # every tensor; float16 / bfloat16 grads (optkern updates neither) go to torch's as well
    for make in (lambda: [torch.ones(3), torch.ones(4, dtype=torch.float64)], lambda: [torch.ones(5).bfloat16()]):
        a = [torch.nn.Parameter(t) for t in make()]
        b = [torch.nn.Parameter(t.clone()) for t in make()]
        for p in a + b:
            p.grad = torch.full_like(p, 2.0)
        ref = torch.nn.utils.clip_grad_norm_(a, 0.5)
        mine = ot.clip_grad_norm_((p for p in b), 0.5)
        assert float(mine) == float(ref) > 0.5
        for pa, pb in zip(a, b):
            assert torch.equal(pb.grad, pa.grad)
        ot.clip_grad_value_((p for p in b), 0.01)
        assert all(float(p.grad.abs().max()) == float(torch.tensor(0.01, dtype=p.dtype)) for p in b)


def test_adagrad_norm_param_with_a_late_first_grad():
    ps = [torch.nn.Parameter(torch.ones(3, dtype=torch.float64)) for _ in range(2)]
    qs = [torch.nn.Parameter(torch.ones(3, dtype=torch.float64)) for _ in range(2)]
    opt = ot.AdagradNorm(ps, lr=0.1, b0=0.5)
    core = optkern.optim.AdagradNorm([q.detach().numpy() for q in qs], lr=0.1, b0=0.5)
    for grads in ([torch.ones(3), None], [torch.ones(3), torch.full((3,), 2.0)]):
        for p, g in zip(ps, grads):
            p.grad = None if g is None else g.double()
        opt.step()  # the second param's first grad comes at the second step
        core.step([None if g is None else g.double().numpy() for g in grads])
    for p, q in zip(ps, qs):
        assert torch.equal(p.detach(), q.detach())
    assert [float(opt.state[p]["step"]) for p in ps] == [2.0, 1.0]


def test_on_stream_makes_torchs_stream_cupys_current(monkeypatch):
    """The CUDA path's stream wiring with stand-ins for CuPy and torch's stream (no GPU needed): the
    device is entered before the stream, the stream wraps torch's current one (CuPy >= 14:
    Stream.from_external; ExternalStream(ptr, device) before), one wrapper per stream, both left."""
    import sys
    import types

    from optkern.torch import _views

    log: list = []
    made: list = []

    class Ctx:
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            log.append(("enter", self.name))
            return self

        def __exit__(self, *exc):
            log.append(("exit", self.name))

    class TorchStream:
        cuda_stream = 0x1234

        def __cuda_stream__(self):
            return (0, self.cuda_stream)

    def from_external(obj):
        made.append(("from_external", obj.__cuda_stream__()[1]))
        return Ctx("stream")

    def external(ptr, dev):
        made.append(("external", ptr, dev))
        return Ctx("stream")

    fake = types.SimpleNamespace(
        cuda=types.SimpleNamespace(Device=lambda i: Ctx(f"device {i}"), Stream=types.SimpleNamespace())
    )
    fake.cuda.Stream.from_external = from_external
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_views, "_STREAMS", {})
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: TorchStream())
    like = types.SimpleNamespace(is_cuda=True, device=torch.device("cuda", 1))
    for _ in range(2):
        with _views.on_stream(like):
            log.append("call")
    assert log == [("enter", "device 1"), ("enter", "stream"), "call", ("exit", "stream"), ("exit", "device 1")] * 2
    assert made == [("from_external", 0x1234)]
    fake.cuda.Stream, fake.cuda.ExternalStream = types.SimpleNamespace(), external  # CuPy < 14
    monkeypatch.setattr(_views, "_STREAMS", {})
    with _views.on_stream(like):
        pass
    assert made[-1] == ("external", 0x1234, 1)
    assert _views.on_stream(torch.zeros(1)) is _views._NO_STREAM


@pytest.mark.parametrize(
    "name,kw",
    [("Adam", dict(lr=1e-2)), ("AdamW", dict(lr=1e-2, weight_decay=0.1)), ("SGD", dict(lr=0.05, momentum=0.9))],
)
def test_torch_grad_scaler_drives_the_adapter_as_torch_optim(name, kw):
    """torch.amp.GradScaler (unscale_, inf check, skipped step, scale updates) around optkern.torch.X
    gives torch.optim.X's params and scales; the step whose grad holds an inf changes nothing."""

    def run(cls):
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2)).double()
        opt = cls(m.parameters(), **kw)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
        x, y = torch.randn(16, 5, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
        scales, unchanged = [], None
        for t in range(8):
            opt.zero_grad()
            scaler.scale(((m(x) - y) ** 2).mean()).backward()
            before = [p.detach().clone() for p in m.parameters()]
            if t == 3:
                next(m.parameters()).grad[0, 0] = float("inf")
            scaler.step(opt)
            scaler.update()
            if t == 3:
                unchanged = all(torch.equal(p, b) for p, b in zip(m.parameters(), before))
            scales.append(scaler.get_scale())
        return [p.detach().clone() for p in m.parameters()], scales, unchanged

    want, want_scales, _ = run(getattr(torch.optim, name))
    got, scales, unchanged = run(getattr(ot, name))
    assert scales == want_scales and scales[3] == scales[2] / 2 and unchanged
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-14)
