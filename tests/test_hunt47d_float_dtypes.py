"""The dtypes dropout and clipping take were told by two predicates (``norm/_dropout.py``'s tuple and
``_clip_checks.check_dtype``'s own test): one helper now, ``_backend.is_float_dtype``. Observed: both
APIs take and refuse the same dtypes, byte-swapped and bfloat16 ones included."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from optkern import _backend, clip
from optkern.norm import dropout

BF16 = np.dtype(ml_dtypes.bfloat16)
TAKEN = [np.dtype(np.float16), BF16, np.dtype(np.float32), np.dtype(np.float64)]
REFUSED = [
    np.dtype(">f4"),
    np.dtype(">f2"),
    BF16.newbyteorder(),
    np.dtype(np.int32),
    np.dtype(np.complex64),
    np.dtype(np.longdouble),
    np.dtype(np.bool_),
]


def _accepts(fn, dt) -> bool:
    try:
        fn(np.ones(5, dt))
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("dt", TAKEN + REFUSED, ids=str)
def test_dropout_and_clipping_take_the_same_dtypes(dt):
    expected = dt in TAKEN
    assert _backend.is_float_dtype(dt) is expected
    assert _accepts(lambda x: dropout(x, 0.5, seed=1, training=False), dt) is expected
    assert _accepts(lambda x: dropout(x, 0.5, seed=1), dt) is expected
    assert _accepts(lambda x: clip.clip_grad_norm_([x], 1.0), dt) is expected
