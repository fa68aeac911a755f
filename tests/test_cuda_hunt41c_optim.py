"""CUDA twin of test_hunt41c_optim's capturable refusal: with CuPy params, capturable mode asked of a
low-precision optimizer (``np.True_``, a group's entry, one set between steps) reached the capturable
path, whose low-precision step ignored the device counters. Refused, nothing written."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import optim as O  # noqa: E402

MSG = r"not supported with master_weights or a compact state_dtype"


def test_capturable_with_a_compact_state_refused_on_cupy():
    with pytest.raises(ValueError, match=MSG):
        O.Adam([cp.ones(5, dtype=cp.float32)], capturable=np.True_, state_dtype="int8")
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['capturable'\]: " + MSG):
        O.Adam([{"params": [cp.ones(5, dtype=cp.float32)], "capturable": True}], state_dtype="bfloat16")
    p = cp.ones(5, dtype=cp.float32)
    opt = O.Adam([p], lr=0.1, state_dtype="int8")
    opt.step([cp.ones(5, dtype=cp.float32)])
    before = cp.asnumpy(p)
    opt.param_groups[0]["capturable"] = True
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['capturable'\]: " + MSG):
        opt.step([cp.ones(5, dtype=cp.float32)])
    np.testing.assert_array_equal(cp.asnumpy(p), before)
    assert opt.state_dict()["state"][0]["step"] == 1
