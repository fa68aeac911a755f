"""torch.optim's implementation keywords on optkern.torch's optimizers: ``foreach`` / ``fused``
(None, True or False) and ``capturable=False`` / ``differentiable=False`` change nothing; what optkern.torch
cannot do is refused by name; torch code passing them runs with the import changed. Tensor
hyper-parameters (``lr``, ``betas``), which torch also takes, are read at every step."""

from __future__ import annotations

import copy
import inspect

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402
from optkern.torch._impl_keywords import TORCH_IMPL_KEYWORDS  # noqa: E402

NAMES = ["SGD", "Adagrad", "AdagradNorm", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"]
HYPER = {"SGD": dict(lr=0.05, momentum=0.9, weight_decay=1e-3), "RMSprop": dict(lr=1e-2, momentum=0.5, centered=True)}


def _model(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).to(dtype)


def _train(make, steps=3, dtype=torch.float32, model=None):
    model = model or _model(dtype)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(11, 7, generator=gen, dtype=dtype), torch.randint(0, 3, (11,), generator=gen)
    opt = make(model)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()], opt


def _takes(name: str, kw: dict) -> bool:
    """Whether optkern.torch's ``name`` takes every implementation keyword of ``kw`` (its torch
    namesake's: NAdam, RMSprop, Adadelta have no ``fused``, SGD and Adagrad no ``capturable``;
    test_hunt46i_torch_impl_names)."""
    return set(kw) <= set(getattr(ot, name)._impl_names)


IMPLS = {
    "foreach": dict(foreach=True),
    "no-foreach": dict(foreach=False),
    "fused": dict(fused=True),
    "no-fused": dict(fused=False),
    "torch-defaults": dict(foreach=None, fused=None, capturable=False, differentiable=False),
}


@pytest.mark.parametrize(
    "name, impl",
    [
        pytest.param(n, {k: v for k, v in kw.items() if _takes(n, {k: v})}, id=f"{i}-{n}")
        for i, kw in IMPLS.items()
        for n in NAMES
        if any(_takes(n, {k: v}) for k, v in kw.items())
    ],
)
def test_implementation_keywords_change_nothing(name, impl):
    cls, hp = getattr(ot, name), HYPER.get(name, dict(lr=1e-2))
    start = [p.detach().clone() for p in _model().parameters()]
    want, _ = _train(lambda m: cls(m.parameters(), **hp))
    got, opt = _train(lambda m: cls(m.parameters(), **hp, **impl))
    assert not torch.equal(want[0], start[0])  # (it trained)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    assert not set(impl) & set(opt.param_groups[0])  # how torch would run: not a hyper-parameter here


REFUSED = [
    (dict(capturable=True), ValueError, r"^capturable: optkern.torch keeps step counts on the host"),
    (dict(differentiable=True), ValueError, r"^differentiable: "),
    (dict(foreach="yes"), TypeError, r"^foreach: expected None or a bool, got str"),
    (dict(fused=1), TypeError, r"^fused: expected None or a bool, got int"),
    (dict(capturable=None), TypeError, r"^capturable: expected a bool, got NoneType"),
]


@pytest.mark.parametrize("name, kw, err, match", [(n, *case) for case in REFUSED for n in NAMES if _takes(n, case[0])])
def test_what_cannot_be_done_is_refused_by_name(name, kw, err, match):
    with pytest.raises(err, match=match):
        getattr(ot, name)([torch.zeros(3, requires_grad=True)], lr=1e-2, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_signature_lists_them_with_torchs_defaults(name):
    sig = inspect.signature(getattr(ot, name)).parameters
    taken = [k for k in TORCH_IMPL_KEYWORDS if k in sig]
    assert {k: sig[k].default for k in taken} == {k: TORCH_IMPL_KEYWORDS[k] for k in taken}
    # of torch's kind: positional where torch's namesake takes them by position (Adagrad's and
    # Adadelta's foreach, RMSprop's capturable, foreach, differentiable), else keyword-only
    theirs = inspect.signature(getattr(torch.optim, name)).parameters if hasattr(torch.optim, name) else {}
    if theirs:  # (the namesake's keywords: test_hunt46i_torch_impl_names)
        assert set(taken) == set(TORCH_IMPL_KEYWORDS) & set(theirs)
    for k in taken:
        want = theirs[k].kind if k in theirs else inspect.Parameter.KEYWORD_ONLY
        assert sig[k].kind is want, (k, sig[k].kind, want)


def test_nanogpt_optimizer_line_matches_torch_in_float64():
    """nanoGPT's ``torch.optim.AdamW(groups, lr, betas, fused=True)`` with the import changed: the same
    training as torch's AdamW (its for-loop form) to float64 rounding, and torch's checkpoint of it
    continues in optkern.torch."""

    def groups(m):
        ps = list(m.parameters())
        return [
            {"params": [p for p in ps if p.dim() >= 2], "weight_decay": 0.1},
            {"params": [p for p in ps if p.dim() < 2]},
        ]

    kw = dict(lr=6e-3, betas=(0.9, 0.95), weight_decay=0.0)
    want, topt = _train(lambda m: torch.optim.AdamW(groups(m), **kw, foreach=False), steps=5, dtype=torch.float64)
    got, _ = _train(lambda m: ot.AdamW(groups(m), **kw, fused=True), steps=5, dtype=torch.float64)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # torch's fused AdamW's checkpoint (its groups hold foreach / fused / ...) loads and continues
    model = _model(torch.float64)
    torch_fused = torch.optim.AdamW(groups(model), **kw, fused=True)
    _train(lambda m: torch_fused, steps=2, model=model, dtype=torch.float64)
    saved = copy.deepcopy(torch_fused.state_dict())  # (a live optimizer's state dict holds its tensors)
    ours = ot.AdamW(groups(model), **kw, fused=True)
    ours.load_state_dict(copy.deepcopy(saved))
    assert ours.param_groups[0]["fused"] is True  # (torch's keys ride along, as any unknown group key)
    ref = _model(torch.float64)
    ref.load_state_dict(model.state_dict())
    _train(lambda m: ours, steps=2, model=model, dtype=torch.float64)
    _train(lambda m: _for_loop(saved, ref, groups, kw), steps=2, model=ref, dtype=torch.float64)
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def _for_loop(saved, model, groups, kw):
    """torch's for-loop AdamW on ``model`` from the state dict ``saved``."""
    opt = torch.optim.AdamW(groups(model), **kw, foreach=False)
    sd = copy.deepcopy(saved)
    for g in sd["param_groups"]:
        g.update(fused=None, foreach=False)
    opt.load_state_dict(sd)
    return opt


@pytest.mark.parametrize("name", [n for n in NAMES if n != "AdagradNorm"])
def test_tensor_lr_under_a_scheduler_trains_like_torch(name, float64_default):
    """torch takes ``lr`` as a tensor (a scheduler then fills it in place): read at every step."""

    def make(lib):
        def build(m):
            opt = getattr(lib, name)(m.parameters(), **{**HYPER.get(name, {}), "lr": torch.tensor(0.02)})
            opt.scheduler = torch.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)
            return opt

        return build

    def train(lib):
        model = _model(torch.float64)
        gen = torch.Generator().manual_seed(1)
        x, y = torch.randn(11, 7, generator=gen), torch.randint(0, 3, (11,), generator=gen)
        opt = make(lib)(model)
        for _ in range(7):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.scheduler.step()
        return model, opt

    (ours, opt), (ref, _) = train(ot), train(torch.optim)
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor) and float(opt.param_groups[0]["lr"]) == 0.02 / 8
    with torch.no_grad():
        for p, q in zip(ours.parameters(), ref.parameters()):
            assert float((p - q).abs().max() / q.abs().max()) <= 1e-12


def test_a_bad_tensor_hyper_parameter_is_refused_by_name():
    w = torch.zeros(3, requires_grad=True)
    with pytest.raises(TypeError, match=r"^param_groups\[0\]: lr: expected a real number, got Tensor"):
        ot.Adam([w], lr=torch.tensor([1e-3, 2e-3]))
    with pytest.raises(ValueError, match=r"^param_groups\[0\]: lr: must be in \[0.0, inf\), got -1.0"):
        ot.Adam([w], lr=torch.tensor(-1.0))
    opt = ot.AdamW([w], lr=torch.tensor(1e-3), betas=(torch.tensor(0.9), torch.tensor(0.99)))
    w.grad = torch.ones(3)
    opt.param_groups[0]["lr"].fill_(float("nan"))  # (in place, as a scheduler writes it)
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['lr'\]: must be finite, got nan"):
        opt.step()
    assert torch.equal(w, torch.zeros(3))
