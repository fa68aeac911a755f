"""Softmax cross-entropy (rules::xent_row) and its R-operator on LARGE logits, against torch.

log p was formed as z - (m + log s) (m the row's max, s = sum e^(z - m)): m + log s rounds to m once
|m| >> log s, so float32 logits [1e8, 1e8] gave log p = [0, 0], loss 0 and gradient [0, 1] for label
0 (torch: log 2 and [-0.5, 0.5]), and R-operator products from that log p were wrong too; logits near
3000 lost ~4e-5 of each log p (~600 float32 ulps of the loss). With label smoothing, sum log p was
sum z - C lse: inf - inf = NaN for logits near the dtype's max (torch: finite). torch forms
log p = (z - m) - log s; so does the kernel now.
"""

import numpy as np
import pytest

from optkern.nn.losses import xent_forward, xent_rop

torch = pytest.importorskip("torch")
F = torch.nn.functional

MAX = {np.float32: float(np.finfo(np.float32).max), np.float64: float(np.finfo(np.float64).max)}
# rows of logits far from 0 (the max itself, 1e8 / 1e17 where the spacing is 8 / 16, and the max's
# neighbour, whose class underflows to p = 0 with a finite log p), then one row of ordinary size
BIG = {
    np.float32: [[1e8, 1e8 + 8, 1e8 - 16, 1e8 + 24], [MAX[np.float32]] * 3 + [np.float32(MAX[np.float32]) * 0.75]],
    np.float64: [[1e17, 1e17 + 16, 1e17 - 32, 1e17 + 48], [MAX[np.float64]] * 3 + [MAX[np.float64] * 0.75]],
}


def problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    z = np.array(BIG[dtype] + [list(3000 + rng.standard_normal(4)), list(rng.standard_normal(4))], dtype)
    y = np.array([1, 0, 2, 3])
    return z, y


def torch_rows(z, y, eps, beta):
    """torch's per-row loss (cross_entropy minus beta H), log p and the gradient of the rows' sum."""
    t = torch.from_numpy(z.copy()).requires_grad_()
    lp = F.log_softmax(t, 1)
    rows = F.cross_entropy(t, torch.from_numpy(y), label_smoothing=eps, reduction="none")
    if beta:
        rows = rows + beta * (lp.exp() * lp).sum(1)
    (g,) = torch.autograd.grad(rows.sum(), t)
    return rows.detach().numpy(), lp.detach().numpy(), g.numpy()


def close(got, want, dtype, what, ulps=8):
    assert got.dtype == dtype, what
    tol = ulps * np.finfo(dtype).eps
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=what)


@pytest.mark.parametrize("beta", [0.0, 0.3])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_with_large_logits_as_torch(dtype, eps, beta):
    z, y = problem(dtype)
    loss, logp, g = xent_forward(z, y, label_smoothing=eps, confidence_penalty=beta)
    t_loss, t_logp, t_g = torch_rows(z, y, eps, beta)
    assert np.isfinite(loss).all() and np.isfinite(g).all()
    close(loss, t_loss, dtype, "loss")
    # (log p to ulps of its own size: the class 0.25 max below the max has log p = -0.25 max)
    np.testing.assert_allclose(logp, t_logp, rtol=8 * np.finfo(dtype).eps, atol=8 * np.finfo(dtype).eps)
    close(g, t_g, dtype, "dlogits")


@pytest.mark.parametrize("beta", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rop_from_large_logits_as_torch(dtype, beta):
    """xent_rop from the forward's log p: torch's Hessian-vector product (double backward)."""
    z, y = problem(dtype, 1)
    r = np.random.default_rng(2).standard_normal(z.shape).astype(dtype)
    _, logp, _ = xent_forward(z, y, confidence_penalty=beta)
    got = xent_rop(logp, r, confidence_penalty=beta, scale=0.25)
    t = torch.from_numpy(z.copy()).requires_grad_()
    lp = F.log_softmax(t, 1)
    loss = F.cross_entropy(t, torch.from_numpy(y)) + beta * (lp.exp() * lp).sum(1).mean()
    (g,) = torch.autograd.grad(loss, t, create_graph=True)
    (hv,) = torch.autograd.grad(g, t, torch.from_numpy(r))
    close(got, hv.numpy(), dtype, "R{dl/dz}", ulps=16)
