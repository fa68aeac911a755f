"""Hunt 39g: optkern.torch loading an 8-bit checkpoint whose block scales are NaN / inf names the
scales' entry (``['exp_avg_scale']: 1 non-finite block scale``), as optkern.optim does (hunt 39c,
the same check): it was decoded and refused afterwards naming the codes
(``['exp_avg']: holds NaN or inf``), the entry that is right. Nothing is loaded."""

import copy

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from torch_common import step_random  # noqa: E402


def _saved():
    torch.manual_seed(3907)
    ps = [torch.randn(300)]
    opt = ot.Adam(ps, lr=1e-2, state_dtype="int8", block_size=64)
    step_random(opt, ps, 1, 2)
    return opt.state_dict()


@pytest.mark.parametrize("key", ["exp_avg_scale", "exp_avg_sq_scale"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("into", ["int8", "float32"])
def test_a_non_finite_block_scale_names_the_scales(key, bad, into):
    sd = copy.deepcopy(_saved())
    sd["state"][0][key][2] = bad
    qs = [torch.randn(300)]
    b = ot.Adam(qs, lr=1e-2, state_dtype=into, block_size=64)
    before = qs[0].clone()
    with pytest.raises(ValueError, match=rf"\['{key}'\]: 1 non-finite block scale \(NaN or inf\)"):
        b.load_state_dict(sd)
    assert not b.state
    assert torch.equal(qs[0], before)


@pytest.mark.parametrize("key", ["exp_avg_scale", "exp_avg_sq_scale"])
def test_several_non_finite_block_scales_are_counted(key):
    sd = copy.deepcopy(_saved())
    sd["state"][0][key][1:4] = float("nan")
    b = ot.Adam([torch.randn(300)], lr=1e-2, state_dtype="int8", block_size=64)
    with pytest.raises(ValueError, match=rf"\['{key}'\]: 3 non-finite block scales \(NaN or inf\)"):
        b.load_state_dict(sd)
    assert not b.state
