"""optkern.clip (defect hunt 42b).

Defect fixed: ``clip_grads_with_norm_`` refused a bfloat16 ``total_norm`` array ("total_norm:
expected a floating dtype, got bfloat16": ml_dtypes' bfloat16 is no NumPy floating kind), where a
float16 one was taken: the norm of bfloat16 grads kept in their own dtype (as torch's
``get_total_norm`` returns it) could not clip them. Now it is read as any float array is (exactly,
into float64), and the grads are clipped as by the same norm given as a float.
"""

import numpy as np
import pytest

from optkern import clip

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("grad_dtype", [np.dtype(np.float32), np.dtype(np.float64), BF16, np.dtype(np.float16)])
@pytest.mark.parametrize("norm", [5.0, 0.375, 1e30, float("inf")])
def test_a_bfloat16_total_norm_clips_as_the_same_norm_as_a_float(grad_dtype, norm):
    rng = np.random.default_rng(42)
    g = (rng.standard_normal(37) * 3).astype(grad_dtype)
    total = np.array([norm], BF16)
    by_float = g.copy()
    clip.clip_grads_with_norm_([by_float], 1.0, float(total[0]))  # (the bfloat16 value, exactly)
    clip.clip_grads_with_norm_([g], 1.0, total)
    np.testing.assert_array_equal(g, by_float)


def test_a_negative_bfloat16_total_norm_is_refused_by_name():
    g = np.ones(3, BF16)
    with pytest.raises(ValueError, match="^total_norm: must be >= 0"):
        clip.clip_grads_with_norm_([g], 1.0, np.array([-2.0], BF16))
    np.testing.assert_array_equal(g, np.ones(3, BF16))


def test_an_integer_total_norm_array_is_still_refused():
    with pytest.raises(TypeError, match="^total_norm: expected a floating dtype, got int64"):
        clip.clip_grads_with_norm_([np.ones(3, np.float32)], 1.0, np.array([2], np.int64))
