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


def _misaligned_copy(a):
    """``a``'s values in an array at an odd byte offset (as read from a raw buffer)."""
    out = np.frombuffer(bytearray(a.nbytes + 1), dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


@pytest.mark.parametrize(
    "kw,keys",
    [
        (dict(state_dtype="bfloat16"), ["exp_avg", "master_param"]),
        (dict(state_dtype="int8"), ["exp_avg_scale", "exp_avg_sq_scale", "master_param"]),
        ({}, ["exp_avg", "master_param"]),
    ],
)
@pytest.mark.parametrize("into", [{}, dict(state_dtype="int8"), dict(state_dtype="bfloat16")])
def test_misaligned_saved_arrays_load_as_aligned_ones(kw, keys, into):
    """A misaligned float32 state loaded (it is copied); a misaligned bfloat16 state or 8-bit scale
    was refused naming the native call's argument (``x``, ``scales``), not the entry."""
    sd = _trained(**kw).state_dict()
    want = optim.Adam([np.zeros(300, BF16)], lr=1e-2, master_weights=True, **into)
    want.load_state_dict(copy.deepcopy(sd))
    odd = copy.deepcopy(sd)
    for k in keys:
        odd["state"][0][k] = _misaligned_copy(odd["state"][0][k])
    got = optim.Adam([np.zeros(300, BF16)], lr=1e-2, master_weights=True, **into)
    got.load_state_dict(odd)
    for k, v in want.state_dict()["state"][0].items():
        w = got.state_dict()["state"][0][k]
        assert np.array_equal(w, v) if isinstance(v, np.ndarray) else w == v
