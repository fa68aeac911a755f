"""optkern.torch.Adagrad: a param group's own initial_accumulator_value starts its sums (the
documented difference from torch 2.x, which reads the constructor's value for every group)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")


def test_group_values_start_their_sums():
    ps = [torch.zeros(3, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    opt = ot.Adagrad(
        [{"params": [ps[0]], "initial_accumulator_value": 1.0}, {"params": [ps[1]]}],
        lr=0.1,
        initial_accumulator_value=0.25,
    )
    opt.add_param_group({"params": [ps[2]], "initial_accumulator_value": 4.0})
    for p in ps:
        p.grad = torch.full_like(p, 0.5)
    opt.step()
    sums = [float(opt.state[p]["sum"][0]) for p in ps]
    assert sums == [1.25, 0.5, 4.25]
    # the step follows the group's own sums: -lr g / sqrt(sum)
    for p, s in zip(ps, sums):
        np.testing.assert_allclose(p.detach().numpy(), -0.1 * 0.5 / (np.sqrt(s) + 1e-10), rtol=1e-15)
