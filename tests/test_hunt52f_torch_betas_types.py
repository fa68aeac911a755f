"""Betas of a wrong type or out of range in optkern.torch's Adam, AdamW and NAdam (hunt 52f).

A beta that is not a number (a string, None, a list, a complex) was a ValueError in Adam and AdamW
("betas must be either both floats or both Tensors", torch's message for a float beside a tensor)
and in NAdam a ValueError or TypeError from ``float()`` naming no beta ("could not convert string
to float: 'a'"); torch's range checks run first and raise TypeError. A beta out of range given as an
int (``(0.9, 1)``) was refused as a float-and-int pair, where torch's range check names the beta.
Now: TypeError naming betas, and the range error naming the beta, before anything is made.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

NAMES = ["Adam", "AdamW", "NAdam"]


def _param():
    return torch.nn.Parameter(torch.linspace(-1.0, 1.0, 7))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("betas", [(0.9, "a"), ("a", 0.9), (0.9, None), (None, None), (0.9, [0.99]), (0.9, 0.99j)])
def test_a_beta_that_is_not_a_number_is_a_type_error_naming_betas(name, betas):
    with pytest.raises(TypeError):  # (torch's own check: a TypeError too)
        getattr(torch.optim, name)([_param()], betas=betas)
    with pytest.raises(TypeError, match=r"^param_groups\[0\]: betas: expected a pair of numbers"):
        getattr(ot, name)([_param()], betas=betas)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("betas, at", [((0.9, 1), 1), ((1, 0.999), 0), ((0.9, float("nan")), 1), ((-1, 0.5), 0)])
def test_a_beta_out_of_range_is_named_before_the_pair_types(name, betas, at):
    with pytest.raises(ValueError, match=f"Invalid beta parameter at index {at}"):
        getattr(torch.optim, name)([_param()], betas=betas)
    with pytest.raises(ValueError, match=rf"^param_groups\[0\]\['betas'\]\[{at}\]: must be"):
        getattr(ot, name)([_param()], betas=betas)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_a_float_beside_an_int_in_range_is_still_torchs_refusal(name):
    for mod in (torch.optim, ot):
        with pytest.raises(ValueError, match="betas must be either both floats or both Tensors"):
            getattr(mod, name)([_param()], betas=(0.9, 0))


@pytest.mark.parametrize("name", NAMES)
def test_a_group_added_with_a_bad_beta_is_named_and_not_added(name):
    opt = getattr(ot, name)([_param()])
    with pytest.raises(TypeError, match=r"^param_groups\[1\]: betas: expected a pair of numbers"):
        opt.add_param_group({"params": [_param()], "betas": (0.9, "x")})
    assert len(opt.param_groups) == 1
