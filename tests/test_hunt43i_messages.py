"""Error messages that said the wrong thing: "1 negative block scales" (a count's noun in the
plural for 1), and optkern.torch.SAM's hint for half params, which sent the caller to
master_weights=True, with which SAM refuses them all the same."""

from __future__ import annotations

import numpy as np
import pytest

from optkern.lowp import check_block_scales


@pytest.mark.parametrize(
    ("values", "want"),
    [
        ([1.0, -2.0, 3.0], r"^w: 1 negative block scale \("),
        ([-1.0, -2.0, 3.0], r"^w: 2 negative block scales \("),
        ([1.0, np.nan, 3.0], r"^w: 1 non-finite block scale \("),
        ([np.inf, np.nan, 3.0], r"^w: 2 non-finite block scales \("),
    ],
)
def test_block_scale_counts_take_the_right_number(values, want):
    with pytest.raises(ValueError, match=want):
        check_block_scales(np.array(values, np.float32), 3 * 64, 64, "w", nonnegative=True)


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("lowp", [{}, {"master_weights": True}])
def test_sam_half_params_hint_says_what_works(dtype, lowp):
    import optkern.torch as ot

    m = torch.nn.Linear(3, 2).to(dtype)
    with pytest.raises(TypeError) as e:
        opt = ot.SAM(m.parameters(), ot.SGD, lr=0.1, **lowp)
        m(torch.ones(4, 3, dtype=dtype)).sum().backward()
        opt.first_step(zero_grad=True)
    msg = str(e.value)
    assert msg.startswith("param_groups[0]['params'][0]: expected float32 or float64"), msg
    # (master_weights=True does not make SAM take them: the hint must not send the caller there)
    assert "need master_weights=True" not in msg
    assert "float32" in msg and "autocast" in msg, msg


def test_sam_half_param_cast_after_construction_gets_the_hint():
    import optkern.torch as ot

    m = torch.nn.Linear(3, 2)
    opt = ot.SAM(m.parameters(), torch.optim.SGD, lr=0.1)
    m.to(torch.bfloat16)  # (torch's SGD takes any dtype: the ascent step refuses it)
    w = m.weight.detach().clone()
    m(torch.ones(4, 3, dtype=torch.bfloat16)).sum().backward()
    with pytest.raises(TypeError, match=r"^param_groups\[0\]\['params'\]\[0\]: .*autocast"):
        opt.first_step()
    assert torch.equal(m.weight.detach(), w)


def test_sam_add_param_group_half_gets_the_hint_and_adds_nothing():
    import optkern.torch as ot

    m = torch.nn.Linear(3, 2)
    opt = ot.SAM(m.parameters(), ot.SGD, lr=0.1)
    half = torch.nn.Parameter(torch.ones(2, dtype=torch.float16))
    with pytest.raises(TypeError, match=r"^param_groups\[1\]\['params'\]\[0\]: .*autocast"):
        opt.add_param_group({"params": [half]})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": iter([torch.nn.Parameter(torch.ones(2))])})  # (an iterator still taken)
    assert len(opt.param_groups) == 2 and len(opt.param_groups[1]["params"]) == 1
