"""Coefficients of the softmax cross-entropy kernels that overflow the arrays' dtype.

The kernels round confidence_penalty and scale to the arrays' dtype: float32 logits with scale 1e39
(finite as a Python float) became inf, and inf * 0 wrote NaN wherever the gradient or the R-operator
is 0 (a row with p = q, a zero direction); a penalty of 1e39 gave loss -inf / NaN. Refused now with a
ValueError naming the argument, as the optimizers' coefficients are (_scalars.finite_in).
"""

import numpy as np
import pytest

from optkern.nn.losses import softmax_cross_entropy, xent_forward, xent_rop

Z = np.array([[0.0, 0.0], [1.0, -np.inf]], np.float32)
Y = np.array([0, 0])


@pytest.mark.parametrize("name", ["scale", "confidence_penalty"])
def test_forward_refuses_a_coefficient_beyond_float32(name):
    with pytest.raises(ValueError, match=name):
        xent_forward(Z, Y, **{name: 1e39})
    with pytest.raises(ValueError, match=name):
        xent_forward(Z, Y, **{name: -1e39})
    # (in range for float64: accepted, and a zero gradient stays 0, not inf * 0)
    _, _, g = xent_forward(Z.astype(np.float64), Y, **{name: 1e39})
    assert g[1, 0] == 0


@pytest.mark.parametrize("name", ["scale", "confidence_penalty"])
def test_rop_refuses_a_coefficient_beyond_float32(name):
    logp = np.log(np.full((1, 2), 0.5, np.float32))
    with pytest.raises(ValueError, match=name):
        xent_rop(logp, np.zeros((1, 2), np.float32), **{name: 1e39})
    out = xent_rop(logp.astype(np.float64), np.zeros((1, 2)), **{name: 1e39})
    np.testing.assert_array_equal(out, 0.0)


def test_loss_refuses_a_penalty_beyond_float32():
    with pytest.raises(ValueError, match="confidence_penalty"):
        softmax_cross_entropy(Z, Y, confidence_penalty=1e39)


def test_mlp_refuses_a_confidence_penalty_past_its_dtype_at_construction():
    """A float32 model took confidence_penalty=1e39 and refused it only at its first loss."""
    from optkern.nn import MLP

    with pytest.raises(ValueError, match=r"confidence_penalty: 1e\+39 is not finite in float32"):
        MLP([4, 3], dtype=np.float32, confidence_penalty=1e39)
    assert MLP([4, 3], dtype=np.float64, confidence_penalty=1e39).confidence_penalty == 1e39
    assert MLP([4, 3], dtype=np.float32, confidence_penalty=0.1).confidence_penalty == 0.1  # (kept unrounded)
