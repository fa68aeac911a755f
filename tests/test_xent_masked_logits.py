"""Cross-entropy with -inf logits (masked classes, as attention-style masking and top-k sampling
write them): p = 0 and log p = -inf there, and every product p log p is its limit 0. The kernel
formed 0 * -inf in its entropy sum, smoothing term and gradient: NaN loss and NaN gradients for
every class of the row. Compared with torch's cross_entropy (label smoothing) and with the float64
limit for the confidence penalty, the MLP's R-operator (xent_rop_row) included."""

import numpy as np
import pytest

from optkern.nn import softmax_cross_entropy
from optkern.nn.losses import softmax_cross_entropy_grad, xent_forward, xent_rop

torch = pytest.importorskip("torch")

Z = np.array([[-np.inf, 1.0, 0.5, -np.inf], [2.0, -np.inf, -1.0, 0.0], [0.3, 0.1, -np.inf, 4.0]])
Y = np.array([1, 3, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_masked_logits_as_torch(dtype, smoothing):
    z = Z.astype(dtype)
    t = torch.from_numpy(z.copy()).requires_grad_()
    ref = torch.nn.functional.cross_entropy(t, torch.from_numpy(Y), label_smoothing=smoothing)
    ref.backward()
    loss, grad = softmax_cross_entropy_grad(z, Y, label_smoothing=smoothing)
    if smoothing == 0.0:  # finite: the masked classes are not targets
        tol = 8 * np.finfo(dtype).eps
        np.testing.assert_allclose(float(loss), ref.item(), rtol=tol)
        np.testing.assert_allclose(grad, t.grad.numpy(), rtol=tol, atol=tol)
    else:  # smoothing puts mass on every class: -eps/C log 0 = inf, as torch's
        assert float(loss) == ref.item() == np.inf
    assert np.isfinite(grad).all()


def test_masked_target_is_an_infinite_loss():
    z = np.array([[-np.inf, 1.0]])
    assert softmax_cross_entropy(z, np.array([1])) == 0.0
    assert softmax_cross_entropy(z, np.array([0])) == np.inf


def _limit_loss(z, y, beta):
    """float64 loss with the confidence penalty, p log p taken as 0 where p = 0."""
    lp = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    p = np.exp(lp)
    plogp = np.where(p > 0, p * np.where(p > 0, lp, 0.0), 0.0)
    return np.mean(-lp[np.arange(len(y)), y] + beta * plogp.sum(axis=1))


def test_confidence_penalty_with_masked_logits_takes_the_limit():
    beta = 0.3
    loss, grad = softmax_cross_entropy_grad(Z, Y, confidence_penalty=beta)
    assert np.isclose(float(loss), _limit_loss(Z, Y, beta), rtol=1e-13)
    # the gradient by central differences on the finite logits; 0 on the masked ones
    h, num = 1e-6, np.zeros_like(Z)
    for i, j in zip(*np.nonzero(np.isfinite(Z))):
        zp, zm = Z.copy(), Z.copy()
        zp[i, j] += h
        zm[i, j] -= h
        num[i, j] = (_limit_loss(zp, Y, beta) - _limit_loss(zm, Y, beta)) / (2 * h)
    np.testing.assert_allclose(grad, num, atol=1e-8)
    assert (grad[~np.isfinite(Z)] == 0).all()


@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_rop_with_masked_logits_is_the_gradients_derivative(beta):
    """xent_rop from the saved log-probabilities (-inf on the masked classes) against central
    differences of the gradient along a direction r on the finite logits."""
    r = np.where(np.isfinite(Z), np.random.default_rng(0).standard_normal(Z.shape), 0.0)
    _, logp, _ = xent_forward(Z, Y, confidence_penalty=beta)
    got = xent_rop(logp, r, confidence_penalty=beta, scale=1.0 / len(Y))
    h = 1e-6
    gp = softmax_cross_entropy_grad(Z + h * r, Y, confidence_penalty=beta)[1]
    gm = softmax_cross_entropy_grad(Z - h * r, Y, confidence_penalty=beta)[1]
    np.testing.assert_allclose(got, (gp - gm) / (2 * h), atol=1e-8)
    assert (got[~np.isfinite(Z)] == 0).all()
