"""Hunt 55j: L-BFGS's ``tolerance_grad`` / ``tolerance_change`` take +inf, as torch.optim.LBFGS does.

torch compares with them (``max |g| <= tolerance_grad``, ``gtd > -tolerance_change``, ...) and checks
nothing, so +inf is a valid choice there: the first check stops at once (tolerance_grad: before any
iteration; tolerance_change: the first iteration ends at its direction, the params unmoved). optkern
refused +inf as "must be finite"; NaN and negative values stay refused by name (a NaN makes every
comparison False: the stopping rule silently off).
"""

import math

import numpy as np
import pytest
import torch

import optkern.torch as ot
from optkern import optim
from test_lbfgs import rosen, rosen_grad, run_pair

X0 = np.array([-1.2, 1.0, 0.3, -0.4, 0.9, 1.7, -0.6])


def _fg(x):
    return rosen(x), rosen_grad(x)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize(
    "tols",
    [
        dict(tolerance_grad=math.inf),
        dict(tolerance_change=math.inf),
        dict(tolerance_grad=math.inf, tolerance_change=math.inf),
        dict(tolerance_grad=np.float64(np.inf), tolerance_change=0.0),
    ],
    ids=["grad", "change", "both", "numpy-grad"],
)
def test_inf_tolerances_step_as_torch_does(tols, line_search_fn):
    seen_t, seen_o, ts, os_, xt, x = run_pair(_fg, X0, 4, max_iter=20, line_search_fn=line_search_fn, **tols)
    assert len(seen_t) == len(seen_o) == 4  # one evaluation a step, at the start
    for a, b in zip(seen_t, seen_o):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x, X0)
    np.testing.assert_array_equal(xt, X0)
    assert (ts["n_iter"], ts["func_evals"]) == (os_["n_iter"], os_["func_evals"])
    assert ts["n_iter"] == (0 if "tolerance_grad" in tols else 4)  # (tolerance_change: an iteration a step)


def test_inf_tolerance_change_with_a_finite_grad_tolerance_later_in_a_run():
    """A finite tolerance_change for some steps, then +inf set between steps: the next step ends at its
    first direction, as torch's does (the states compared entry for entry)."""
    xt = torch.tensor(X0.copy(), requires_grad=True)
    topt = torch.optim.LBFGS([xt], max_iter=3)
    x = X0.copy()
    opt = optim.LBFGS([x], max_iter=3)

    def tclosure():
        loss, g = _fg(xt.detach().numpy())
        xt.grad = torch.tensor(g)
        return torch.tensor(loss, dtype=torch.float64)

    for k in range(4):
        if k == 2:
            topt.param_groups[0]["tolerance_change"] = math.inf
            opt.param_groups[0]["tolerance_change"] = math.inf
        topt.step(tclosure)
        opt.step(lambda: _fg(x))
        np.testing.assert_allclose(x, xt.detach().numpy(), rtol=1e-12)
    t, o = topt.state[xt], opt.state_dict()["state"][0]
    assert (t["n_iter"], t["func_evals"]) == (o["n_iter"], o["func_evals"])
    # the last step ended at its direction: d, t and the history as torch's
    np.testing.assert_allclose(o["d"], t["d"].numpy(), rtol=1e-12)
    assert o["t"] == pytest.approx(float(t["t"]), rel=1e-12)
    assert len(o["old_dirs"]) == len(t["old_dirs"]) > 0


def test_torch_lbfgs_and_loaded_state_take_inf():
    w = torch.tensor(X0.copy(), requires_grad=True)
    opt = ot.LBFGS([w], tolerance_grad=math.inf, tolerance_change=math.inf)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_array_equal(w.detach().numpy(), X0)
    sd = optim.LBFGS([X0.copy()], tolerance_grad=math.inf).state_dict()
    optim.LBFGS([X0.copy()]).load_state_dict(sd)


@pytest.mark.parametrize("name", ["tolerance_grad", "tolerance_change"])
@pytest.mark.parametrize("bad", [math.nan, -math.inf, -1.0, "inf", True])
def test_nan_negative_and_non_numbers_still_refused_by_name(name, bad):
    exc = TypeError if isinstance(bad, (str, bool)) else ValueError
    with pytest.raises(exc, match=f"^{name}: "):
        optim.LBFGS([X0.copy()], **{name: bad})
    with pytest.raises(exc, match=f"^{name}: "):
        ot.LBFGS([torch.zeros(3, dtype=torch.float64)], **{name: bad})
    sd = optim.LBFGS([X0.copy()]).state_dict()
    sd["param_groups"][0][name] = bad
    with pytest.raises(exc, match=rf"^state_dict\['param_groups'\]\[0\]\['{name}'\]: "):
        optim.LBFGS([X0.copy()]).load_state_dict(sd)
