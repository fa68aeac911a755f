"""optkern.torch's optimizers have torch.optim's signatures (the README: "torch's signatures"),
defaults included (54th session's docs hunt, e).

- ``optkern.torch.Adam``'s ``decoupled_weight_decay`` defaulted to None (``help()`` showed it),
  torch's to False; None now runs as False, as torch steps it.
- ``optkern.torch.AdamW`` has no ``decoupled_weight_decay`` parameter (torch's neither: TypeError),
  but the keyword reached Adam's through ``**lowp``: ``AdamW(params, decoupled_weight_decay=False)``
  built an AdamW that decayed as L2 (coupled) Adam, silently.
"""

from __future__ import annotations

import inspect

import pytest

torch = pytest.importorskip("torch")
import optkern.torch as ot  # noqa: E402

NAMES = ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam", "LBFGS"]


@pytest.mark.parametrize("name", NAMES)
def test_defaults_are_torchs(name):
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    ours = inspect.signature(getattr(ot, name)).parameters
    differ = {k: (p.default, ours[k].default) for k, p in theirs.items() if k in ours and ours[k].default != p.default}
    assert not differ, f"{name}: (torch's, ours) {differ}"
    assert set(theirs) <= set(ours)


def test_adam_decoupled_none_and_false_step_as_torchs():
    torch.manual_seed(0)
    x = torch.randn(6, 4, dtype=torch.float64)
    results = []
    for cls, kw in [
        (torch.optim.Adam, {}),
        (ot.Adam, {}),
        (ot.Adam, {"decoupled_weight_decay": None}),
        (ot.Adam, {"decoupled_weight_decay": False}),
    ]:
        w = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3).requires_grad_()
        opt = cls([w], lr=0.1, weight_decay=0.5, **kw)
        assert opt.param_groups[0]["decoupled_weight_decay"] in (False, None)
        for _ in range(3):
            opt.zero_grad()
            (x @ w).square().sum().backward()
            opt.step()
        results.append(w.detach().clone())
    for r in results[1:]:
        torch.testing.assert_close(r, results[0], rtol=1e-14, atol=1e-15)


def test_adamw_refuses_decoupled_weight_decay_as_torch_does():
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'decoupled_weight_decay'"):
        torch.optim.AdamW([p], decoupled_weight_decay=False)
    for value in (False, True, None):
        with pytest.raises(
            TypeError, match=r"^AdamW.__init__\(\) got an unexpected keyword argument 'decoupled_weight_decay'"
        ):
            ot.AdamW([p], decoupled_weight_decay=value)
    assert ot.AdamW([p]).param_groups[0]["decoupled_weight_decay"] is True
    assert "decoupled_weight_decay" not in inspect.signature(ot.AdamW).parameters
