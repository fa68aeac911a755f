"""optkern.norm.dropout in eval mode (training=False) returned a strided (non-C-contiguous) or
misaligned x unchanged, which training mode refuses ("x: array must be C-contiguous", "x: array
data is misaligned"): a pipeline checked in eval failed at its first training step (hunt 46f made
eval refuse the dtypes training refuses; the layout was left). Now the same refusal in both modes,
and a C-contiguous x is still returned itself in eval."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import norm


def _misaligned():
    return np.frombuffer(bytearray(4 * 5 + 1), np.float32, offset=1, count=5)


X = np.arange(12, dtype=np.float32).reshape(3, 4)
LAYOUTS = [
    pytest.param(lambda: np.asfortranarray(X), "must be C-contiguous", id="fortran"),
    pytest.param(lambda: X.T, "must be C-contiguous", id="transposed"),
    pytest.param(lambda: X[:, ::-1], "must be C-contiguous", id="negative-stride"),
    pytest.param(lambda: X[:, ::2], "must be C-contiguous", id="strided"),
    pytest.param(_misaligned, "data is misaligned", id="misaligned"),
]


@pytest.mark.parametrize("make, match", LAYOUTS)
@pytest.mark.parametrize("return_mask", [False, True])
def test_eval_refuses_the_layouts_training_refuses(make, match, return_mask):
    x = make()
    for training in (True, False):
        with pytest.raises(ValueError, match=rf"^x: array {match}$"):
            norm.dropout(x, 0.5, seed=1, training=training, return_mask=return_mask)


@pytest.mark.parametrize(
    "x",
    [X, X[1:], X.reshape(3, 4, 1)[:, :, 0], np.zeros((0, 3), np.float32)],
    ids=["whole", "rows", "column-of-3d", "empty"],
)
def test_contiguous_views_are_still_returned_themselves(x):
    assert norm.dropout(x, 0.5, seed=1, training=False) is x
    assert norm.dropout(x, 0.5, seed=1).shape == x.shape
