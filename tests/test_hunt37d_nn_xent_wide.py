"""Softmax cross-entropy of float32 logits over many classes: the row's sums (of e^(z - max), of
e (z - max) and of z - max, the last for label smoothing) were accumulated in float32, so the loss
lost digits as the class count grew (C = 10**6: relative error ~2e-6, torch's float32 ~5e-8); the
R-operator's sums likewise (cpp/include/optkern/rules/loss.hpp now sums in double)."""

import numpy as np
import pytest

from optkern.nn import softmax_cross_entropy
from optkern.nn.losses import xent_forward, xent_rop


def _reference(z, y, eps):
    """The row losses in float64 from the same float32 logits (log-sum-exp, shifted)."""
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    logp = (z - m) - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(len(y)), y]
    return (1 - eps) * nll - eps * logp.mean(axis=1)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_float32_loss_over_a_million_classes_is_rounded_once(eps):
    c = 10**6
    z = np.random.default_rng(0).standard_normal((2, c)).astype(np.float32)
    y = np.array([0, c - 1])  # (the boundary labels)
    got = softmax_cross_entropy(z, y, label_smoothing=eps, reduction="none")
    want = _reference(z, y, eps)
    assert got.dtype == np.float32
    # a few float32 ulps of the ~14.3 loss (1 ulp ~ 9.5e-7 there); float32 sums were off by ~2e-5
    np.testing.assert_allclose(got, want, rtol=2.5e-7, atol=0)


@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_float32_rop_over_a_million_classes_matches_float64(beta):
    """The R-operator's row sums (<p, r>, sum p log p, sum p r log p: the entropy and its R-derivative
    that the confidence penalty needs) were float32 too: with beta = 0.3, off by ~4e-5 of the largest
    entry, against the same float32 inputs computed in float64."""
    c = 10**6
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, c)).astype(np.float32)
    r = rng.standard_normal((2, c)).astype(np.float32)
    _, logp, _ = xent_forward(z, np.array([0, c - 1]), confidence_penalty=beta)
    got = xent_rop(logp, r, confidence_penalty=beta)
    want = xent_rop(logp.astype(np.float64), r.astype(np.float64), confidence_penalty=beta)
    assert got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()
