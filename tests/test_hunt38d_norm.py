"""optkern.norm's modules, load_state_dict (38th hunt): a bfloat16 module could not load its own
state_dict ("state_dict['weight']: expected real numbers, got bfloat16": ml_dtypes' bfloat16 is
not of NumPy kind "f"), nor a torch bfloat16 module's (torch's ``.numpy()`` refuses bfloat16: an
unnamed "Got unsupported ScalarType BFloat16"); and a finite value past the module's dtype (1e6
into float16, 1e39 into float32) was written as inf, silently, or under ``-W error`` raised
NumPy's "overflow encountered in cast" after the keys before it were written. And rms_norm's
default eps on half inputs (below)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch

from optkern.norm.modules import BatchNorm, GroupNorm, LayerNorm, RMSNorm

_BF16 = np.dtype(ml_dtypes.bfloat16)


def _modules(dtype):
    return [BatchNorm(3, dtype=dtype), LayerNorm(3, dtype=dtype), GroupNorm(1, 3, dtype=dtype), RMSNorm(3, dtype=dtype)]


@pytest.mark.parametrize("dtype", ["bfloat16", np.float16, np.float32])
def test_a_module_loads_its_own_state_dict(dtype):
    for m in _modules(dtype):
        m.weight[...] = np.array([0.5, 2.0, -3.0]).astype(m.weight.dtype)
        state = m.state_dict()
        fresh = type(m)(*_args(m), dtype=dtype)
        fresh.load_state_dict(state)
        for k, v in fresh.state_dict().items():
            np.testing.assert_array_equal(np.asarray(v, np.float64), np.asarray(state[k], np.float64), err_msg=k)


def _args(m):
    if isinstance(m, GroupNorm):
        return (1, 3)
    return (3,)


def test_bfloat16_numpy_values_load_into_float16_and_float32_modules():
    for dtype in (np.float16, np.float32):
        m = LayerNorm(3, dtype=dtype)
        m.load_state_dict({"weight": np.array([1.5, -2.0, 3.0], _BF16), "bias": np.zeros(3, _BF16)})
        np.testing.assert_array_equal(m.weight, np.array([1.5, -2.0, 3.0], dtype))


@pytest.mark.parametrize("dtype", ["bfloat16", np.float32])
def test_a_torch_bfloat16_state_dict_loads(dtype):
    t = torch.nn.BatchNorm1d(3).to(torch.bfloat16)
    with torch.no_grad():
        t.weight.copy_(torch.tensor([0.5, 2.0, -3.0]))
        t.running_var.copy_(torch.tensor([1.0, 4.0, 0.25]))
    t.num_batches_tracked.fill_(5)
    m = BatchNorm(3, dtype=dtype)
    m.load_state_dict(t.state_dict())
    np.testing.assert_array_equal(m.weight.astype(np.float64), [0.5, 2.0, -3.0])
    np.testing.assert_array_equal(m.running_var.astype(np.float64), [1.0, 4.0, 0.25])
    assert m.num_batches_tracked == 5


@pytest.mark.parametrize(
    ("dtype", "key", "value"),
    [
        (np.float16, "weight", 1e6),
        (np.float16, "bias", -7e4),
        ("bfloat16", "bias", 1e39),
        (np.float32, "weight", 1e39),
        (np.float32, "running_var", 1e39),  # float32 statistics
        (np.float16, "running_mean", 1e39),  # (float16's statistics are float32)
    ],
)
def test_a_value_past_the_dtype_is_refused_before_anything_is_written(dtype, key, value):
    m = BatchNorm(3, dtype=dtype)
    before = {k: np.array(v, copy=True) for k, v in m.state_dict().items()}
    state = {k: np.asarray(v, np.float64) for k, v in before.items()}
    state["weight"] = np.array([0.5, 2.0, 3.0])  # (a valid change before the bad key)
    state[key] = np.array([1.0, value, 1.0])
    with pytest.raises(ValueError, match=rf"^state_dict\['{key}'\]: .*overflows"):
        m.load_state_dict(state)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_non_finite_values_still_load_as_torch_loads_them():
    m = LayerNorm(3, dtype=np.float16)
    m.load_state_dict({"weight": np.array([np.inf, np.nan, 65504.0]), "bias": np.array([-np.inf, 0, 65519.0])})
    assert np.isposinf(m.weight[0]) and np.isnan(m.weight[1]) and m.weight[2] == 65504
    assert np.isneginf(m.bias[0]) and m.bias[2] == 65504  # 65519 rounds to float16's max


# ---- rms_norm's default eps on half inputs ------------------------------------------------------
# eps=None was finfo(x.dtype).eps: 9.8e-4 for float16, 2**-7 for bfloat16, added to mean(x^2); torch
# adds its computation dtype's (float32 for both: torch._decomp's _fused_rms_norm, and the CPU
# kernel): x of RMS 0.01 came out 0.305 (float16) / 0.112 (bfloat16) where torch gives 0.9995 / 1.0.


@pytest.mark.parametrize(("dtype", "tdtype"), [(np.float16, torch.float16), (_BF16, torch.bfloat16)])
@pytest.mark.parametrize("rms", [0.01, 1e-3, 1.0, 30.0])
def test_half_rms_norm_default_eps_is_torchs(dtype, tdtype, rms):
    from optkern.norm.functional import rms_norm

    x = (np.random.default_rng(3).standard_normal((5, 8)) * rms).astype(dtype)
    want = torch.nn.functional.rms_norm(torch.from_numpy(x.astype(np.float32)).to(tdtype), (8,)).float().numpy()
    got = rms_norm(x, (8,))[0].astype(np.float32)
    np.testing.assert_array_equal(got, want)
    m = RMSNorm(8, dtype="bfloat16" if dtype == _BF16 else dtype)
    np.testing.assert_array_equal(m(x).astype(np.float32), want)
