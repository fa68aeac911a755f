"""layer_norm / rms_norm with an empty ``normalized_shape``: refused, as torch refuses it, with a
message saying what is wrong. It said "() must be the trailing dimensions of x, whose shape is
(4, 3)" -- which () is, of every shape -- for a 0-d tensor as for any other."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import norm

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("fn", [norm.layer_norm, norm.rms_norm])
@pytest.mark.parametrize("x", [np.ones((4, 3), np.float32), np.full((), 2.0, np.float32)])
def test_an_empty_normalized_shape_says_so(fn, x):
    with pytest.raises(ValueError, match=r"normalized_shape: expected at least one dimension .*got \(\)$"):
        fn(x, ())
    with pytest.raises(RuntimeError, match="at least 1-dimensional"):  # (torch's rule: the same refusal)
        torch.nn.functional.layer_norm(torch.from_numpy(x), ())
