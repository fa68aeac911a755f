"""Hunt 43f: a master-weights checkpoint whose ``master_param`` is an ``ml_dtypes.bfloat16`` array
(optkern.optim, NumPy).

A float16 master was taken (widened to float32, exactly), and the bfloat16 moments of any
checkpoint are widened by the loader, but a bfloat16 master was refused as "expected a
floating-point array, got dtype bfloat16": the loader widened only the moments. Now a bfloat16
master is widened exactly as the moments are, and loads as the float16 one does.

A float64 master (or moment) past float32's range was refused as overflowing "the parameter's
dtype bfloat16": it is the float32 copy that it overflows (1e30 fits in bfloat16)."""

import copy

import numpy as np
import pytest

from optkern import optim

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


def _trained(dt=BF16, **kw):
    rng = np.random.default_rng(43)
    p = rng.standard_normal(300).astype(dt)
    opt = optim.Adam([p], lr=1e-2, master_weights=True, **kw)
    for _ in range(2):
        opt.step([rng.standard_normal(300).astype(dt)])
    return opt


@pytest.mark.parametrize("half", [np.dtype(np.float16), BF16], ids=str)
@pytest.mark.parametrize("kw", [{}, dict(state_dtype="int8"), dict(state_dtype="bfloat16", stochastic_rounding=True)])
def test_a_half_master_loads_as_its_float32_values(half, kw):
    sd = _trained(**kw).state_dict()
    saved = sd["state"][0]["master_param"].astype(half)
    sd = copy.deepcopy(sd)
    sd["state"][0]["master_param"] = saved
    q = np.zeros(300, BF16)
    opt = optim.Adam([q], lr=1e-2, master_weights=True, **kw)
    opt.load_state_dict(sd)
    got = opt.state_dict()["state"][0]["master_param"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, saved.astype(np.float32))  # (every half value is a float32)
    opt.step([np.ones(300, BF16)])


def test_a_bad_bfloat16_master_is_still_named():
    sd = copy.deepcopy(_trained().state_dict())
    m = sd["state"][0]["master_param"].astype(BF16)
    m[3] = np.inf
    sd["state"][0]["master_param"] = m
    opt = optim.Adam([np.zeros(300, BF16)], lr=1e-2, master_weights=True)
    with pytest.raises(ValueError, match=r"^state_dict\['state'\]\[0\]\['master_param'\]: 1 non-finite"):
        opt.load_state_dict(sd)
    sd["state"][0]["master_param"] = m[:299]
    with pytest.raises(ValueError, match=r"^state_dict\['state'\]\[0\]\['master_param'\]: expected 300 elements"):
        opt.load_state_dict(sd)
    assert opt.state_dict()["state"] == {}


@pytest.mark.parametrize("key", ["master_param", "exp_avg"])
def test_a_float64_entry_past_float32_names_float32(key):
    sd = copy.deepcopy(_trained().state_dict())
    v = sd["state"][0][key].astype(np.float64)
    v[0] = 1e39  # (a bfloat16 holds it: float32, the master's and the states' dtype, does not)
    sd["state"][0][key] = v
    opt = optim.Adam([np.zeros(300, BF16)], lr=1e-2, master_weights=True)
    with pytest.raises(ValueError, match=rf"^state_dict\['state'\]\[0\]\['{key}'\]: entries overflow float32 "):
        opt.load_state_dict(sd)
