"""optkern.norm.dropout in eval mode (training=False) takes the inputs training mode takes: x's dtype
is checked as the native kernel checks it (TypeError naming x), though no kernel runs. An integer,
complex, bool or byte-swapped x was returned unchanged in eval and refused at the first training
call; p, seed and offset were already checked in both modes."""

import ml_dtypes
import numpy as np
import pytest

from optkern import norm


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_, np.complex64, ">f4", ">f8"])
@pytest.mark.parametrize("return_mask", [False, True])
def test_eval_refuses_the_dtypes_training_refuses(dtype, return_mask):
    x = np.ones(5, dtype=dtype)
    before = x.copy()
    with pytest.raises(TypeError, match=r"^x: expected float16, bfloat16, float32 or float64, got"):
        norm.dropout(x, 0.5, seed=1, training=True, return_mask=return_mask)
    with pytest.raises(TypeError, match=r"^x: expected float16, bfloat16, float32 or float64, got"):
        norm.dropout(x, 0.5, seed=1, training=False, return_mask=return_mask)
    np.testing.assert_array_equal(x, before)


def test_eval_refuses_a_byte_swapped_bfloat16():
    x = np.ones(4, dtype=ml_dtypes.bfloat16)
    swapped = x.view(x.dtype.newbyteorder())
    with pytest.raises(TypeError, match=r"^x: expected float16"):
        norm.dropout(swapped, 0.5, seed=1, training=False)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32, np.float64])
def test_eval_still_returns_a_float_x_itself(dtype):
    x = np.linspace(-1, 1, 7).astype(dtype)
    assert norm.dropout(x, 0.5, seed=1, training=False) is x
    y, m = norm.dropout(x, 0.5, seed=1, training=False, return_mask=True)
    assert y is x and m.dtype == np.uint8 and m.shape == x.shape and bool(m.all())


def test_backward_counter_overflow_names_dy_and_writes_nothing():
    """dropout_backward's counter check names its own argument: it said "offset + x.size" of a call
    that has no x (the seed / offset checks are optkern.random's, written once)."""
    dy = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"^offset: offset \+ dy\.size overflows the 64-bit counter$"):
        norm.dropout_backward(dy, 0.5, seed=1, offset=2**64 - 2)
    with pytest.raises(ValueError, match=r"^offset: offset \+ x\.size overflows the 64-bit counter$"):
        norm.dropout(dy, 0.5, seed=1, offset=2**64 - 2)
    np.testing.assert_array_equal(dy, np.ones(3, np.float32))
    # the last index of the stream, 2**64 - 1, is still one
    assert norm.dropout_backward(dy, 0.5, seed=1, offset=2**64 - 3).shape == (3,)
