"""The norm modules' load_state_dict refuses a NumPy masked array, naming its key, before anything is
written: np.asarray dropped the mask and the hidden values loaded as data, silently, where every
array argument of optkern (and its checkpoint codec) refuses a masked array for that reason."""

from __future__ import annotations

import numpy as np
import pytest

from optkern.norm import BatchNorm, GroupNorm, LayerNorm, RMSNorm


@pytest.mark.parametrize(
    "module, key",
    [
        (BatchNorm(3), "running_mean"),
        (BatchNorm(3), "weight"),
        (LayerNorm(3), "bias"),
        (GroupNorm(1, 3), "weight"),
        (RMSNorm(3), "weight"),
    ],
)
def test_masked_value_refused_naming_its_key(module, key):
    sd = module.state_dict()
    before = {k: v.copy() for k, v in module.state_dict().items()}
    sd = {k: v + 1 if v.dtype.kind == "f" else v for k, v in sd.items()}  # (all would change)
    sd[key] = np.ma.array(np.array([5.0, 6.0, 7.0], np.float32), mask=[False, True, False])
    with pytest.raises(TypeError, match=rf"^state_dict\['{key}'\]: .*masked array"):
        module.load_state_dict(sd)
    for k, v in module.state_dict().items():
        assert np.array_equal(v, before[k])


def test_plain_values_still_load():
    m = BatchNorm(3)
    sd = m.state_dict()
    sd["running_mean"] = [1.0, 2.0, 3.0]  # (anything asarray takes, as documented)
    sd["weight"] = np.ma.array([1.0, 2.0, 3.0]).filled(0.0)
    m.load_state_dict(sd)
    assert m.running_mean.tolist() == [1.0, 2.0, 3.0] and m.weight.tolist() == [1.0, 2.0, 3.0]
