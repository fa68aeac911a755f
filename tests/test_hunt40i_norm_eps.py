"""Hunt 40i: the norm modules refuse an ``eps`` their dtype's statistics cannot use (rounding to 0
or past float32's max: float32 statistics for float32, float16 and bfloat16 modules) where it is
given, by the forward's own rule and words; the constructor took it and the first forward refused
it (``nn.MLP`` checks its ``norm_eps`` so at construction). A float64 module takes both."""

import numpy as np
import pytest

from optkern import norm

MAKERS = {
    "BatchNorm": lambda eps, dt: norm.BatchNorm(3, eps=eps, dtype=dt),
    "LayerNorm": lambda eps, dt: norm.LayerNorm(3, eps=eps, dtype=dt),
    "GroupNorm": lambda eps, dt: norm.GroupNorm(1, 3, eps=eps, dtype=dt),
    "RMSNorm": lambda eps, dt: norm.RMSNorm(3, eps=eps, dtype=dt),
}
BAD = [
    (1e39, r"^eps: 1e\+39 overflows float32 \(the statistics' dtype\); at most "),
    (1e-50, r"^eps: 1e-50 rounds to 0 in float32 \(the statistics' dtype\); the smallest usable value is "),
]


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("eps,msg", BAD, ids=["huge", "tiny"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
def test_an_eps_the_statistics_cannot_use_is_refused_at_construction(make, eps, msg, dtype):
    with pytest.raises(ValueError, match=msg) as built:
        MAKERS[make](eps, dtype)
    m = MAKERS[make](1e-5, dtype)
    m.eps = eps  # (an attribute: the forward still refuses it, the same words)
    with pytest.raises(ValueError) as fwd:
        m(np.ones((4, 3), dtype))
    assert str(fwd.value) == str(built.value)


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("eps", [1e39, 1e-50])
def test_a_float64_module_takes_them(make, eps):
    m = MAKERS[make](eps, np.float64)
    m(np.ones((4, 3), np.float64))
