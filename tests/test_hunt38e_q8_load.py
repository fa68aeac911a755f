"""Loading an 8-bit checkpoint whose codes do not cover their parameter must name the codes.

Defect (fixed): the 8-bit decode of a saved moment (``LowpStateDictMixin._lowp_widen`` in
optkern.optim, ``_lowp._widen`` in optkern.torch) checked the scales against the codes before
anything checked the codes against their parameter. A checkpoint whose ``exp_avg`` codes were
truncated (2048 codes for a 2049-element parameter, with the 33 scales of the 2049 elements, block
64) was refused naming ``exp_avg_scale`` ("expected 32 block scales, got 33"): the entry that is
right, not the one that is wrong. Now the codes' element count is checked against the parameter
first, named as the codes' entry; nothing is loaded either way.
"""

import copy

import numpy as np
import pytest
import torch

import optkern.torch as ot
from optkern import optim

N, BLOCK = 2049, 64


def _q8_numpy():
    rng = np.random.default_rng(38)
    p = rng.standard_normal(N).astype(np.float32)
    opt = optim.Adam([p], lr=1e-2, state_dtype="int8", block_size=BLOCK)
    opt.step([rng.standard_normal(N).astype(np.float32)])
    return opt, p


def _q8_torch():
    torch.manual_seed(38)
    p = torch.nn.Parameter(torch.randn(N))
    opt = ot.Adam([p], lr=1e-2, state_dtype="int8", block_size=BLOCK)
    p.grad = torch.randn(N)
    opt.step()
    return opt, p


@pytest.mark.parametrize("cut", [1, BLOCK])
@pytest.mark.parametrize("target", ["int8", "float32"])
def test_numpy_truncated_codes_are_named(cut, target):
    src, _ = _q8_numpy()
    sd = copy.deepcopy(src.state_dict())
    sd["state"][0]["exp_avg"] = sd["state"][0]["exp_avg"][:-cut].copy()
    p = np.zeros(N, np.float32)
    kw = {"state_dtype": "int8", "block_size": BLOCK} if target == "int8" else {}
    opt = optim.Adam([p], lr=1e-2, **kw)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=r"\['exp_avg'\]: expected 2049 elements") as e:
        opt.load_state_dict(sd)
    assert "exp_avg_scale" not in str(e.value)
    assert str(opt.state_dict()) == str(before)  # nothing loaded


@pytest.mark.parametrize("cut", [1, BLOCK])
@pytest.mark.parametrize("target", ["int8", "float32"])
def test_torch_truncated_codes_are_named(cut, target):
    src, _ = _q8_torch()
    sd = copy.deepcopy(src.state_dict())
    sd["state"][0]["exp_avg"] = sd["state"][0]["exp_avg"][:-cut].clone()
    p = torch.nn.Parameter(torch.zeros(N))
    kw = {"state_dtype": "int8", "block_size": BLOCK} if target == "int8" else {}
    opt = ot.Adam([p], lr=1e-2, **kw)
    with pytest.raises(ValueError, match=r"\['exp_avg'\]: .*2049") as e:
        opt.load_state_dict(sd)
    assert "exp_avg_scale" not in str(e.value)
    assert len(opt.state[p]) == 0  # nothing loaded


def test_wrong_scales_are_still_named_as_the_scales():
    """Codes that cover their parameter with scales of another count: the scales are named."""
    src, _ = _q8_numpy()
    sd = copy.deepcopy(src.state_dict())
    sd["state"][0]["exp_avg_scale"] = sd["state"][0]["exp_avg_scale"][:-1].copy()
    opt = optim.Adam([np.zeros(N, np.float32)], lr=1e-2, state_dtype="int8", block_size=BLOCK)
    with pytest.raises(ValueError, match=r"\['exp_avg_scale'\]: expected 33"):
        opt.load_state_dict(sd)
    tsrc, _ = _q8_torch()
    tsd = copy.deepcopy(tsrc.state_dict())
    tsd["state"][0]["exp_avg_scale"] = tsd["state"][0]["exp_avg_scale"][:-1].clone()
    topt = ot.Adam([torch.nn.Parameter(torch.zeros(N))], lr=1e-2, state_dtype="int8", block_size=BLOCK)
    with pytest.raises(ValueError, match=r"\['exp_avg_scale'\]: expected 33"):
        topt.load_state_dict(tsd)
