"""weight_norm refuses a strided v (and dw) along every dim, as every normalization input (it took
them along every dim but 0, the axis move's copy hiding them), and an empty slice's error shows v's
own shape, not the axis-moved one."""

import numpy as np
import pytest

import optkern.norm as N


@pytest.mark.parametrize("dim", [0, 1, -1, None])
def test_strided_v_refused_along_every_dim(dim):
    rng = np.random.default_rng(1)
    v = rng.standard_normal((5, 14))[:, ::2]
    g = np.ones(1 if dim is None else v.shape[dim])
    with pytest.raises(ValueError, match="v: array must be C-contiguous"):
        N.weight_norm(v, g, dim=dim)
    vc = np.ascontiguousarray(v)
    _, saved = N.weight_norm(vc, g, dim=dim)
    dw = rng.standard_normal((5, 14))[:, ::2]
    with pytest.raises(ValueError, match="dw: array must be C-contiguous"):
        N.weight_norm_backward(dw, vc, g, saved)


def test_empty_slice_error_shows_v_shape():
    v = np.zeros((2, 0, 3))
    with pytest.raises(ValueError, match=r"v: every slice must be non-empty, got shape \(2, 0, 3\)"):
        N.weight_norm(v, np.ones(3), dim=2)
