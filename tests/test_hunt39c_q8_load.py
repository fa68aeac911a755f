"""Hunt 39c: an 8-bit checkpoint whose block scales are bad must name the scales' entry.

A NaN / inf block scale in ``exp_avg_scale`` was taken by the decode and refused afterwards
naming the codes (``['exp_avg']: 64 non-finite entries``): the entry that is right, not the one
that is wrong (hunt 38e's rule, for the scales). A scales array of the right count in the wrong
shape (``(1, 5)``) was refused as "expected 5 float32 block scales, got 5 of float32". Now
both name ``..._scale`` with what is wrong; nothing is loaded either way."""

import copy

import numpy as np
import pytest

from optkern import optim

N, BLOCK = 300, 64


def _saved():
    rng = np.random.default_rng(3905)
    p = rng.standard_normal(N).astype(np.float32)
    opt = optim.Adam([p], lr=1e-2, state_dtype="int8", block_size=BLOCK)
    opt.step([rng.standard_normal(N).astype(np.float32)])
    return opt.state_dict(), p


def _refused(sd, p, match):
    opt = optim.Adam([p.copy()], lr=1e-2, state_dtype="int8", block_size=BLOCK)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(sd)
    assert opt.state_dict()["state"] == before["state"]


@pytest.mark.parametrize("key", ["exp_avg_scale", "exp_avg_sq_scale"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_block_scale_names_the_scales(key, bad):
    sd, p = _saved()
    sd["state"][0][key][2] = bad
    _refused(sd, p, rf"\['{key}'\]: 1 non-finite block scales?")


@pytest.mark.parametrize("key", ["exp_avg_scale", "exp_avg_sq_scale"])
def test_block_scales_of_the_wrong_shape_say_the_shape(key):
    sd, p = _saved()
    sd["state"][0][key] = sd["state"][0][key].reshape(1, -1)
    _refused(sd, p, rf"\['{key}'\]: expected 5 float32 block scales \(shape \(5,\)\), got float32 of shape \(1, 5\)")
