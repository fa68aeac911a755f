"""An 8-bit checkpoint's scale says its map by its sign (negative: the signed map), and a state that
is never negative (exp_avg_sq, ...) is stored in the unsigned map. A negative scale for one loaded
its codes through the signed map: codes below 128 as other (positive) magnitudes, silently. Now
refused naming the scales, by optkern.optim and optkern.torch, into 8-bit and float32 storage."""

import copy

import numpy as np
import pytest

import optkern.optim as O


def _crafted(sd, key):
    e = sd["state"][0]
    e[key] = np.full_like(np.asarray(e[key]), 100) if isinstance(e[key], np.ndarray) else e[key].fill_(100)
    e[key + "_scale"] = -abs(e[key + "_scale"])
    return sd


@pytest.mark.parametrize("into", ["int8", "float32"])
def test_optim_refuses_a_negative_scale_of_a_nonnegative_state(into):
    p = np.zeros(300, np.float32)
    o = O.Adam([p], state_dtype="int8", block_size=64)
    o.step([np.linspace(-1, 1, 300, dtype=np.float32)])
    sd = _crafted(copy.deepcopy(o.state_dict()), "exp_avg_sq")
    q = np.zeros(300, np.float32)
    o2 = O.Adam([q], state_dtype=into, block_size=64)
    with pytest.raises(ValueError, match=r"\['exp_avg_sq_scale'\]"):
        o2.load_state_dict(sd)
    assert not o2.state_dict()["state"]


@pytest.mark.parametrize("into", ["int8", "float32"])
def test_torch_adapter_refuses_a_negative_scale_of_a_nonnegative_state(into):
    torch = pytest.importorskip("torch")
    OT = pytest.importorskip("optkern.torch")
    t = torch.nn.Parameter(torch.zeros(300))
    o = OT.Adam([t], state_dtype="int8", block_size=64)
    t.grad = torch.linspace(-1, 1, 300)
    o.step()
    sd = _crafted(copy.deepcopy(o.state_dict()), "exp_avg_sq")
    q = torch.nn.Parameter(torch.zeros(300))
    o2 = OT.Adam([q], state_dtype=into, block_size=64)
    with pytest.raises(ValueError, match=r"\['exp_avg_sq_scale'\]"):
        o2.load_state_dict(sd)
    assert not o2.state
