"""Norm modules' load_state_dict takes "NumPy / CuPy arrays or CPU tensors" (its docstring): a CuPy
module's state dict loads into a NumPy module (was TypeError "state_dict['weight']: expected an
array, got ndarray (Implicit conversion to a NumPy array is not allowed...)"), as a NumPy one
already loaded into a CuPy module."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import norm  # noqa: E402

SHAPE = (4, 3, 5)


def _modules(like):
    return {
        "BatchNorm": norm.BatchNorm(3, like=like),
        "LayerNorm": norm.LayerNorm(5, like=like),
        "GroupNorm": norm.GroupNorm(3, 3, like=like),
        "RMSNorm": norm.RMSNorm(5, like=like),
    }


def _trained(name, xp):
    rng = np.random.default_rng(39)
    x = xp.asarray(rng.standard_normal(SHAPE).astype(np.float32))
    m = _modules(x)[name]
    for a in m.parameters():
        a[...] = xp.asarray(rng.standard_normal(a.shape).astype(np.float32))
    m(x)
    m(x * 2)
    return m


def _host(d):
    return {k: cp.asnumpy(v) if isinstance(v, cp.ndarray) else np.asarray(v) for k, v in d.items()}


@pytest.mark.parametrize("name", ["BatchNorm", "LayerNorm", "GroupNorm", "RMSNorm"])
@pytest.mark.parametrize("to_gpu", [False, True])
def test_a_state_dict_loads_across_backends(name, to_gpu):
    src = _trained(name, np if to_gpu else cp)
    dst = _modules(cp.zeros(SHAPE, np.float32) if to_gpu else np.zeros(SHAPE, np.float32))[name]
    dst.load_state_dict(src.state_dict())
    got, want = _host(dst.state_dict()), _host(src.state_dict())
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    for a in dst.parameters():
        assert isinstance(a, cp.ndarray) == to_gpu  # still on the module's own backend


def test_a_bad_cupy_value_is_named_and_nothing_is_written():
    src = _trained("BatchNorm", cp).state_dict()
    src["running_var"] = cp.ones(4, np.float32)  # wrong shape
    dst = norm.BatchNorm(3)
    before = _host(dst.state_dict())
    with pytest.raises(ValueError, match=r"state_dict\['running_var'\]: expected shape \(3,\), got \(4,\)"):
        dst.load_state_dict(src)
    after = _host(dst.state_dict())
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])
