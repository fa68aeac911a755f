"""Low-precision storage is an optimizer's (constructor keywords), not a param group's: a group given
``state_dtype="int8"`` (or ``block_size``, ``seed``, ``master_weights``, ``stochastic_rounding``)
kept float32 states silently, in optkern.optim and optkern.torch alike. Now the group is refused,
naming the key, and the optimizer is left as it was."""

import numpy as np
import pytest

import optkern.optim as O
from optkern.optim._lowp_config import LOWP_KEYWORDS

KEYS = sorted(LOWP_KEYWORDS)
VALUES = {"state_dtype": "int8", "block_size": 64, "seed": 3, "master_weights": True, "stochastic_rounding": True}


@pytest.mark.parametrize("key", KEYS)
def test_optim_refuses_a_groups_low_precision_keyword(key):
    a, b = np.zeros(3, np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=rf"param_groups\[1\]\['{key}'\]"):
        O.Adam([{"params": [a]}, {"params": [b], key: VALUES[key]}])
    opt = O.Adam([a])
    with pytest.raises(ValueError, match=rf"param_groups\[1\]\['{key}'\]"):
        opt.add_param_group({"params": [b], key: VALUES[key]})
    assert len(opt.param_groups) == 1
    opt.step([np.ones(3, np.float32)])  # (unchanged: steps on)


@pytest.mark.parametrize("key", KEYS)
def test_torch_adapter_refuses_a_groups_low_precision_keyword(key):
    torch = pytest.importorskip("torch")
    OT = pytest.importorskip("optkern.torch")
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))
    with pytest.raises(ValueError, match=rf"param_groups\[1\]\['{key}'\]"):
        OT.Adam([{"params": [a]}, {"params": [b], key: VALUES[key]}])
    opt = OT.Adam([a])
    with pytest.raises(ValueError, match=rf"param_groups\[1\]\['{key}'\]"):
        opt.add_param_group({"params": [b], key: VALUES[key]})
    assert len(opt.param_groups) == 1
