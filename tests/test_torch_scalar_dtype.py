"""float64 models under torch's float32 default dtype (``model.double()``, nothing else changed):
torch keeps its step counts and NAdam's mu_product in float32 then, and optkern.torch follows it
(float64 to the last bits of torch.optim's for-loop over 300 steps, NAdam included)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402

CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adagrad", dict(lr=0.05)),
    ("RMSprop", dict(lr=1e-2, centered=True, momentum=0.5)),
    ("Adadelta", dict(lr=1.0)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("NAdam", dict(lr=1e-2)),
    ("NAdam", dict(lr=1e-2, momentum_decay=0.05, decoupled_weight_decay=True, weight_decay=0.1)),
]


def _train(make, steps):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (9,), generator=gen)
    opt = make(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("name, kw", CASES)
def test_float64_model_under_a_float32_default_dtype_trains_like_torch(name, kw):
    assert torch.get_default_dtype() == torch.float32
    ours, opt = _train(lambda ps: getattr(ot, name)(ps, **kw), 300)
    ref, topt = _train(lambda ps: getattr(torch.optim, name)(ps, **kw, foreach=False), 300)
    with torch.no_grad():
        for p, q in zip(ours.parameters(), ref.parameters()):
            assert float((p - q).abs().max() / q.abs().max()) <= 1e-12
    if name == "NAdam":  # the product itself: torch's float32 value, bit for bit
        (mine,), (theirs,) = (list(o.state.values())[:1] for o in (opt, topt))
        assert mine["mu_product"].dtype == theirs["mu_product"].dtype == torch.float32
        assert float(mine["mu_product"]) == float(theirs["mu_product"])
