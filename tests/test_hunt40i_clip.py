"""Hunt 40i: ``clip_grad_norm_``, ``clip_grad_value_`` and ``get_total_norm`` refuse a gradient of
another dtype saying what they take -- float32, float64, float16 or bfloat16 -- as
``clip_grads_with_norm_`` did: their native calls' "expected float32 or float64" left out the half
types they also clip (through float32 copies)."""

import numpy as np
import pytest

from optkern import clip

WANT = r"^grads\[{i}\]: expected float32, float64, float16 or bfloat16, got {dt}$"
CALLS = {
    "clip_grad_norm_": lambda g: clip.clip_grad_norm_(g, 1.0),
    "clip_grad_norm_p3": lambda g: clip.clip_grad_norm_(g, 1.0, norm_type=3.0),
    "clip_grad_norm_out": lambda g: clip.clip_grad_norm_(g, 1.0, out=np.zeros(1)),
    "clip_grad_value_": lambda g: clip.clip_grad_value_(g, 1.0),
    "get_total_norm": lambda g: clip.get_total_norm(g),
    "clip_grads_with_norm_": lambda g: clip.clip_grads_with_norm_(g, 1.0, 2.0),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("dtype", ["int32", "int64", "bool", "complex64", ">f4", "uint16", "O"])
def test_each_clip_call_names_the_accepted_dtypes(call, dtype):
    g = np.ones(4, dtype)
    before = g.copy()
    with pytest.raises(TypeError, match=WANT.format(i=0, dt=np.dtype(dtype))):
        CALLS[call]([g])
    assert np.array_equal(g, before)  # nothing written


@pytest.mark.parametrize("call", CALLS)
def test_the_name_is_the_callers_index_past_none_entries(call):
    with pytest.raises(TypeError, match=WANT.format(i=2, dt="int32")):
        CALLS[call]([None, None, np.ones(3, np.int32)])


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_accepted_dtypes_still_clip(call, dtype):
    CALLS[call]([np.full(4, 3.0, dtype)])
