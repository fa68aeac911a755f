"""Complex params in optkern.torch's first-order optimizers, against torch.optim.

torch.optim steps a complex param as its real view (``torch.view_as_real``: re and im interleaved),
its state tensors complex like the param (viewed as real in the step) and its step count real;
SGD alone runs complex arithmetic, which rounds differently from the real view's. optkern.torch
does the same on the real views: complex128 within 1e-12 of torch's default (for-loop) step over
50 steps; complex64 bit for bit torch.optim's for-loop on the real views with an IEEE sqrt put in
(the float32 parity measure of tests/test_torch_adapter.py), and within 4x torch's own spread of
torch's complex step; a group mixing complex and real params; checkpoints crossing both ways.
"""

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from torch_common import CASES  # noqa: E402 (after the torch skip)
from torch_ieee_sqrt import ieee_sqrt  # noqa: E402

torch.set_num_threads(1)

CX_CASES = CASES + [
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True, maximize=True)),
    ("Adagrad", dict(lr=0.05, maximize=True)),
    ("RMSprop", dict(lr=1e-3, momentum=0.5, centered=True, maximize=True, weight_decay=1e-3)),
    ("Adam", dict(lr=1e-3, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=1e-3, weight_decay=0.1, amsgrad=True)),
    ("Adadelta", dict(lr=0.5, maximize=True)),
    ("NAdam", dict(lr=1e-3, maximize=True)),
]
CX_IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CX_CASES)]
STEPS = 50
REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def problem(dtype):
    """A complex linear layer (W, b) and a real scale r, with data: its loss |x W^T + b - t|^2 + ..."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, dtype=dtype, generator=g)
    b = torch.randn(4, dtype=dtype, generator=g)
    r = torch.randn(5, dtype=REAL[dtype], generator=g)
    x = torch.randn(8, 3, dtype=dtype, generator=g)
    t = torch.randn(8, 4, dtype=dtype, generator=g)
    return [w, b, r], (x, t)


def loss_of(params, data, sign=1.0):
    w, b, r = params
    x, t = data
    return sign * (((x @ w.T + b - t).abs() ** 2).mean() + ((r**2) * (1 + b.real.mean()) ** 2).sum() * 0.1)


def train(factory, dtype, maximize=False, real_view=False, steps=STEPS, groups=False):
    """Params after ``steps`` of ``factory(params)``; ``real_view``: the complex params held as their
    real views (torch.view_as_real) and the model reading them through view_as_complex."""
    init, data = problem(dtype)
    leaves = [
        (torch.view_as_real(p).clone() if p.is_complex() and real_view else p.clone()).requires_grad_() for p in init
    ]
    opt = factory([{"params": leaves[:2]}, {"params": leaves[2:]}] if groups else leaves)
    for _ in range(steps):
        opt.zero_grad()
        ps = [torch.view_as_complex(p) if real_view and q.is_complex() else p for p, q in zip(leaves, init)]
        loss_of(ps, data, -1.0 if maximize else 1.0).backward()
        opt.step()
    out = [p.detach() for p in leaves]
    return [torch.view_as_complex(p) if real_view and q.is_complex() else p for p, q in zip(out, init)], opt


def rel(a, b) -> float:
    return max(float((x - y).abs().max() / x.abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize("name, kw", CX_CASES, ids=CX_IDS)
def test_complex128_trains_like_torch(name, kw):
    mx = kw.get("maximize", False)
    want, topt = train(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw), torch.complex128, mx)
    mine, opt = train(lambda ps: getattr(ot, name)(ps, **kw), torch.complex128, mx)
    assert rel(want, mine) <= 1e-12
    assert mine[0].dtype == torch.complex128 and mine[2].dtype == torch.float64
    # the state as torch's: complex tensors of a complex param, a real step count
    for p, q in zip(topt.param_groups[0]["params"], opt.param_groups[0]["params"]):
        ts, ms = topt.state[p], opt.state[q]
        assert ts.keys() == ms.keys()
        for k in ts:
            if isinstance(ts[k], torch.Tensor):
                assert ms[k].dtype == ts[k].dtype, k
                assert ms[k].shape == ts[k].shape, k


@pytest.mark.parametrize("name, kw", CX_CASES, ids=CX_IDS)
def test_complex64_bitwise_torch_on_the_real_views_with_ieee_sqrt(name, kw):
    # torch.optim's step of a complex param is its step on the real view (SGD's complex arithmetic
    # aside): with torch's one non-IEEE rounding replaced, optkern's is that step bit for bit
    mx = kw.get("maximize", False)
    with ieee_sqrt():
        want, _ = train(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw), torch.complex64, mx, True)
    mine, _ = train(lambda ps: getattr(ot, name)(ps, **kw), torch.complex64, mx)
    for w, m in zip(want, mine):
        assert torch.equal(w, m)


@pytest.mark.parametrize("name, kw", CX_CASES, ids=CX_IDS)
def test_complex64_close_to_torch_as_torch_is_to_itself(name, kw):
    mx = kw.get("maximize", False)

    def torch_run(real_view=False, **impl):
        return train(lambda ps: getattr(torch.optim, name)(ps, **kw, **impl), torch.complex64, mx, real_view)[0]

    loop = torch_run(foreach=False)
    others = [torch_run(foreach=True), torch_run(True, foreach=False)]  # (SGD's complex arithmetic vs its view's)
    with ieee_sqrt():
        others.append(torch_run(foreach=False))
    mine, _ = train(lambda ps: getattr(ot, name)(ps, **kw), torch.complex64, mx)
    spread = max(rel(loop, o) for o in others)
    assert rel(loop, mine) <= 4 * spread


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64])
def test_adagrad_norm_is_the_real_views(dtype):
    # optkern's own: a complex param's AdaGrad-Norm is its real view's (||g||^2 adds re^2 + im^2),
    # sharing b^2 with the real params of its view's dtype
    kw = dict(lr=0.1, b0=0.5, weight_decay=1e-3)
    want, wopt = train(lambda ps: ot.AdagradNorm(ps, **kw), dtype, real_view=True)
    mine, opt = train(lambda ps: ot.AdagradNorm(ps, **kw), dtype)
    for w, m in zip(want, mine):
        assert torch.equal(w, m)
    ps = opt.param_groups[0]["params"]
    assert opt.state[ps[0]]["b_sq"] is opt.state[ps[2]]["b_sq"]  # (complex and real: one b^2)
    assert torch.equal(opt.state[ps[0]]["b_sq"], wopt.state[wopt.param_groups[0]["params"][0]]["b_sq"])


@pytest.mark.parametrize(
    "name, kw", [CASES[1], CASES[7], CASES[5], CASES[3]], ids=["SGD", "Adam", "RMSprop", "Adagrad"]
)
def test_complex_and_real_params_in_two_groups(name, kw):
    want, _ = train(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw), torch.complex128, groups=True)
    mine, _ = train(lambda ps: getattr(ot, name)(ps, **kw), torch.complex128, groups=True)
    assert rel(want, mine) <= 1e-12


def test_channels_last_complex_param():
    g = torch.Generator().manual_seed(3)
    init = torch.randn(2, 3, 4, 5, dtype=torch.complex128, generator=g)
    target = torch.randn(2, 3, 4, 5, dtype=torch.complex128, generator=g)
    out = []
    for cls, kw in ((torch.optim.Adam, dict(foreach=False)), (ot.Adam, {})):
        p = init.clone().to(memory_format=torch.channels_last).requires_grad_()
        assert not p.is_contiguous()
        opt = cls([p], lr=1e-2, amsgrad=True, **kw)
        for _ in range(20):
            opt.zero_grad()
            ((p - target).abs() ** 2 * torch.arange(5.0)).sum().backward()
            assert p.grad.stride() == p.stride()
            opt.step()
        out.append(p.detach())
        assert opt.state[p]["exp_avg"].stride() == p.stride()
    assert rel([out[0]], [out[1]]) <= 1e-12


CROSS = [
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("Adagrad", dict(lr=0.05, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=1e-3, momentum=0.5, centered=True)),
    ("Adadelta", dict(lr=0.5)),
    ("Adam", dict(lr=1e-3, amsgrad=True)),
    ("NAdam", dict(lr=1e-3)),
]


@pytest.mark.parametrize("name, kw", CROSS, ids=[n for n, _ in CROSS])
@pytest.mark.parametrize("direction", ["torch_to_optkern", "optkern_to_torch"])
def test_checkpoints_cross_both_ways(name, kw, direction):
    t_cls, o_cls = (
        (lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw)),
        (lambda ps: getattr(ot, name)(ps, **kw)),
    )
    want, _ = train(t_cls, torch.complex128, steps=30)
    first, second = (t_cls, o_cls) if direction == "torch_to_optkern" else (o_cls, t_cls)
    _, opt = train(first, torch.complex128, steps=15)
    sd = opt.state_dict()
    cx = sd["state"][0]
    for k, v in cx.items():  # (a complex param's state: complex tensors, a real step count)
        if isinstance(v, torch.Tensor) and v.dim():
            assert v.dtype == torch.complex128, k
    # continue from those params and that state with the other library
    init, data = problem(torch.complex128)
    leaves = [p.detach().clone().requires_grad_() for p in opt.param_groups[0]["params"]]
    other = second(leaves)
    other.load_state_dict(sd)
    for _ in range(15):
        other.zero_grad()
        loss_of(leaves, data).backward()
        other.step()
    assert rel(want, [p.detach() for p in leaves]) <= 1e-12


def test_complex64_checkpoint_into_complex128_params_is_cast():
    # torch's loader casts a floating-point param's state to its dtype but leaves a complex one's:
    # optkern casts it too, as a complex param's step needs its dtype
    _, opt = train(lambda ps: ot.Adam(ps, lr=1e-3), torch.complex64, steps=3)
    sd = opt.state_dict()
    init, _ = problem(torch.complex128)
    ps = [p.requires_grad_() for p in init]
    mine = ot.Adam(ps, lr=1e-3)
    mine.load_state_dict(sd)
    assert mine.state[ps[0]]["exp_avg"].dtype == torch.complex128
    assert mine.state[ps[2]]["exp_avg"].dtype == torch.float64
