"""Hunt 56j: the single-array arguments of optkern.nn's elementwise kernels (``activation``'s ``z``,
``nn.losses.xent_rop``'s ``logp`` / ``r``) refuse a list of numbers by their own name.

They went to ``_backend.backend``, which also takes lists of arrays: a list of floats was named by
its first element ("z[0]: expected a numpy or cupy array, got float"), as if a list of arrays were
what ``z`` takes. ``softmax_cross_entropy``'s ``logits`` said it right; all share one check now.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import nn as onn
from optkern.nn.losses import xent_rop


@pytest.mark.parametrize("z", [[1.0, 2.0], (0.5,), [[1.0], [2.0]], 3.0, "z"])
def test_activation_names_z(z):
    with pytest.raises(TypeError, match=rf"^z: expected a numpy or cupy array, got {type(z).__name__}$"):
        onn.activation("gelu", z, order=2)


def test_xent_rop_names_logp_and_r():
    logp = np.log(np.full((2, 3), 1.0 / 3))
    with pytest.raises(TypeError, match=r"^logp: expected a numpy or cupy array, got list$"):
        xent_rop(logp.tolist(), np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"^r: expected a numpy or cupy array, got list$"):
        xent_rop(logp, np.ones((2, 3)).tolist())
    # (the arrays themselves still work: the R-product of the mean loss of uniform rows)
    r = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, -2.0]])
    p = np.exp(logp)
    want = (p * r - p * (p * r).sum(axis=1, keepdims=True)) / 2
    np.testing.assert_allclose(xent_rop(logp, r, scale=0.5), want, rtol=1e-14, atol=1e-16)


def test_logits_list_still_named():
    with pytest.raises(TypeError, match=r"^logits: expected a numpy or cupy array, got list$"):
        onn.softmax_cross_entropy([[0.0, 1.0]], np.array([1]))
