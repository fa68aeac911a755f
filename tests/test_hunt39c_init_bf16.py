"""Hunt 39c: the initializers refuse bfloat16 weights (ml_dtypes arrays, torch bfloat16 tensors)
with "expected a floating dtype, got bfloat16" -- bfloat16 is one; the message now says which
dtypes are taken and how to get a bfloat16 initialization (a float32 one, rounded)."""

import numpy as np
import pytest

from optkern import init

ml_dtypes = pytest.importorskip("ml_dtypes")


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        ("xavier_uniform_", ()),
        ("kaiming_normal_", ()),
        ("orthogonal_", ()),
        ("trunc_normal_", ()),
        ("constant_", (0.5,)),
    ],
)
def test_bfloat16_weights_are_refused_with_an_accurate_message(fn, args):
    w = np.zeros((5, 9), ml_dtypes.bfloat16)
    with pytest.raises(TypeError, match=r"^w: bfloat16 is not supported .*float16, float32 or float64.*to_bfloat16"):
        getattr(init, fn)(w, *args)
    assert not w.astype(np.float32).any()


def test_lsuv_names_the_bfloat16_weight():
    w = np.zeros((5, 9), ml_dtypes.bfloat16)
    with pytest.raises(TypeError, match=r"^weights\[0\]: bfloat16 is not supported"):
        init.lsuv_([w], lambda x: [x], np.ones((3, 9)))


def test_integer_weights_keep_their_message():
    with pytest.raises(TypeError, match=r"^w: expected a floating dtype, got int32"):
        init.xavier_uniform_(np.zeros((3, 3), np.int32))
