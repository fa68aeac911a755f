"""optkern.optim.NAdam loading a checkpoint entry saved at step 0 with its ``mu_product`` (hunt 47n).

A step-0 entry's moments were loaded (torch's next step reads them) but its ``mu_product`` was
dropped: the step started the momentum schedule's product again at 1, where torch.optim.NAdam
multiplies the saved one on (its params and mu_product after the step differed). It is loaded now,
checked as a stepped entry's is; an entry without one (which torch's loader refuses: KeyError)
still starts at 1.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from optkern.optim import NAdam

torch = pytest.importorskip("torch")


def _step0_checkpoint(mu_product) -> dict:
    p = torch.nn.Parameter(torch.zeros(5))
    groups = torch.optim.NAdam([p], lr=0.1).state_dict()["param_groups"]
    entry = {"step": torch.tensor(0.0), "exp_avg": torch.zeros(5), "exp_avg_sq": torch.zeros(5)}
    if mu_product is not None:
        entry["mu_product"] = torch.tensor(mu_product)
    return {"state": {0: entry}, "param_groups": groups}


@pytest.mark.parametrize("mu_product", [0.5, 1.0])
def test_a_step_0_entrys_mu_product_is_stepped_on_as_torch_steps_it(mu_product):
    sd = _step0_checkpoint(mu_product)
    x0 = np.array([1.0, -2.0, 0.5, 3.0, -0.25], np.float32)
    g = np.array([0.3, -1.0, 2.0, 0.01, -0.7], np.float32)
    ref = torch.nn.Parameter(torch.from_numpy(x0.copy()))
    t = torch.optim.NAdam([ref], lr=0.1)
    t.load_state_dict(copy.deepcopy(sd))
    ref.grad = torch.from_numpy(g.copy())
    t.step()

    x = x0.copy()
    opt = NAdam([x], lr=0.1)
    opt.load_state_dict(copy.deepcopy(sd))
    opt.step([g.copy()])
    np.testing.assert_array_equal(x, ref.detach().numpy())  # (torch's float32 for-loop: the same bits)
    assert opt.state_dict()["state"][0]["mu_product"] == pytest.approx(float(t.state[ref]["mu_product"]), rel=1e-6)


def test_a_step_0_entrys_bad_mu_product_is_refused_by_name_before_anything_changes():
    x = np.ones(5, np.float32)
    opt = NAdam([x], lr=0.1)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=r"\['mu_product'\]"):
        opt.load_state_dict(_step0_checkpoint(2.0))
    assert opt.state_dict() == before


def test_a_step_0_entry_without_mu_product_starts_at_1():
    # (torch's loader refuses the entry without one: its reference is the same entry holding 1, torch's
    # fresh start; a second optkern run as the reference went the same code path and could not fail)
    x0 = np.array([1.0, -2.0, 0.5, 3.0, -0.25], np.float32)
    g = np.array([0.3, -1.0, 2.0, 0.01, -0.7], np.float32)
    ref = torch.nn.Parameter(torch.from_numpy(x0.copy()))
    t = torch.optim.NAdam([ref], lr=0.1)
    t.load_state_dict(_step0_checkpoint(1.0))
    ref.grad = torch.from_numpy(g.copy())
    t.step()

    x = x0.copy()
    opt = NAdam([x], lr=0.1)
    opt.load_state_dict(_step0_checkpoint(None))
    opt.step([g.copy()])
    np.testing.assert_array_equal(x, ref.detach().numpy())
    assert opt.state_dict()["state"][0]["mu_product"] == pytest.approx(float(t.state[ref]["mu_product"]), rel=1e-6)
