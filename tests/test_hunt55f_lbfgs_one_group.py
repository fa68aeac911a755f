"""optkern.optim.LBFGS given torch's one-group form ``[{"params": [...], "lr": 0.5}]``.

torch.optim.LBFGS takes one parameter group (its values override the constructor's; it refuses only
more than one), and so does optkern.torch.LBFGS. optkern.optim.LBFGS, which promises torch's
semantics, refused the one group: "params: LBFGS doesn't support per-parameter options (parameter
groups)".
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O

torch = pytest.importorskip("torch")


def _loss(x):
    return (x * x).sum() + x.prod() ** 2 + torch.sin(x).sum()


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_one_group_overrides_the_constructor_as_in_torch(line_search_fn):
    x0 = np.random.default_rng(7).standard_normal(7)
    x = x0.copy()
    ours = O.LBFGS([{"params": [x], "lr": 0.5, "max_iter": 2}], max_iter=7, line_search_fn=line_search_fn)
    xt = torch.tensor(x0, requires_grad=True)
    ref = torch.optim.LBFGS([{"params": [xt], "lr": 0.5, "max_iter": 2}], max_iter=7, line_search_fn=line_search_fn)

    def closure_np():
        t = torch.from_numpy(x.copy()).requires_grad_()
        loss = _loss(t)
        loss.backward()
        return float(loss.detach()), t.grad.numpy()

    def closure_t():
        ref.zero_grad()
        loss = _loss(xt)
        loss.backward()
        return loss

    for _ in range(3):
        ours.step(closure_np)
        ref.step(closure_t)
    np.testing.assert_allclose(x, xt.detach().numpy(), rtol=1e-12, atol=1e-14)
    g, gt = ours.param_groups[0], ref.param_groups[0]
    # (max_eval: torch's default from the constructor's max_iter, 7 * 5 // 4, not the group's)
    keys = ("lr", "max_iter", "max_eval")
    assert [g[k] for k in keys] == [gt[k] for k in keys] == [0.5, 2, 8]
    assert ours.state["n_iter"] == ref.state[xt]["n_iter"]
    assert ours.param_groups[0]["params"][0] is x


def test_one_group_of_a_lone_array_or_a_generator():
    a, b = np.ones(3), np.ones(2)
    assert O.LBFGS([{"params": a}]).param_groups[0]["params"][0] is a
    assert O.LBFGS([{"params": (p for p in (a, b))}]).param_groups[0]["params"] == [a, b]


@pytest.mark.parametrize(
    ("groups", "error", "match"),
    [
        ([{"params": [np.ones(2)]}, {"params": [np.ones(3)]}], ValueError, r"^params: LBFGS doesn't support per-param"),
        ([{"lr": 0.5}], ValueError, r"^params\[0\]: missing 'params'"),
        ([{"params": [np.ones(2)], "momentum": 0.9}], ValueError, r"^params\[0\]: unknown hyper-parameter 'momentum'"),
        ([{"params": [np.ones(2)], "lr": -1.0}], ValueError, r"^params\[0\]\['lr'\]: must be in \[0\.0, inf\)"),
        ([{"params": [np.ones(2)], "line_search_fn": "wolfe"}], ValueError, r"^params\[0\]\['line_search_fn'\]"),
        ([{"params": []}], ValueError, r"^params: optimizer got an empty parameter list"),
    ],
)
def test_groups_refused_by_name(groups, error, match):
    with pytest.raises(error, match=match):
        O.LBFGS(groups)
