"""The CUDA kernels on this session's rule changes, against the CPU module bit for bit (the rules are
shared): dropout with p = 1 (x * 0), cross-entropy with -inf logits (p log p as 0: loss, gradient,
R-operator), and clip_grad_norm_'s factor rounded as torch's (rules::clip_coef). Skipped without
CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU."""

import numpy as np
import pytest

import optkern
from gpu import require_gpu, same_bits
from optkern import norm
from optkern.nn.losses import xent_forward, xent_rop

cp, _ = require_gpu()

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_p_one(dtype):
    x = np.array([np.nan, np.inf, -2.5, 1.5, -0.0] * 41, dtype)
    y, mask = norm.dropout(x, 1.0, seed=9, return_mask=True)
    yg, mg = norm.dropout(cp.asarray(x), 1.0, seed=9, return_mask=True)
    same_bits(cp.asnumpy(mg), mask, "mask")
    same_bits(cp.asnumpy(yg), y, "y")
    same_bits(cp.asnumpy(norm.dropout_backward(cp.asarray(x), 1.0, seed=9)), y, "dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [0.0, 0.3])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_with_masked_logits(dtype, beta, eps):
    z = np.array([[-np.inf, 1.0, 0.5, -np.inf], [2.0, -np.inf, -1.0, 0.0], [0.3, 0.1, -np.inf, 4.0]], dtype)
    y = np.array([1, 3, 0])
    r = np.where(np.isfinite(z), np.linspace(-1.0, 1.0, z.size).reshape(z.shape), 0.0).astype(dtype)
    want = xent_forward(z, y, label_smoothing=eps, confidence_penalty=beta, scale=0.25)
    got = xent_forward(cp.asarray(z), cp.asarray(y), label_smoothing=eps, confidence_penalty=beta, scale=0.25)
    for g, w, what in zip(got[:2], want[:2], ("loss", "logp")):
        same_bits(cp.asnumpy(g), w, what)
    # (p = exp(log p): the device's exp is CUDA's, the host's a polynomial within a few ulp of it,
    # rules/activation.hpp; the gradient and the R-operator (values of order 1) differ by as much)
    tol = 8 * np.finfo(dtype).eps
    np.testing.assert_allclose(cp.asnumpy(got[2]), want[2], rtol=tol, atol=tol, err_msg="grad")
    np.testing.assert_allclose(
        cp.asnumpy(xent_rop(got[1], cp.asarray(r), confidence_penalty=beta, scale=0.25)),
        xent_rop(want[1], r, confidence_penalty=beta, scale=0.25),
        rtol=tol,
        atol=tol,
        err_msg="rop",
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_factor_rounded_as_torch(dtype):
    """The device's factor from the device's norm (its float64 sum runs in another order than the
    CPU's: the norms may differ in the last bit), as torch's ops in the grads' dtype make it."""
    rng = np.random.default_rng(4)
    for _ in range(20):
        gs = [(rng.standard_normal(n) * rng.uniform(0.1, 10)).astype(dtype) for n in (7, 1023, 1)]
        max_norm = float(rng.uniform(0.01, 5.0))
        dev = [cp.asarray(g) for g in gs]
        norm_dev = float(optkern.clip_grad_norm_(dev, max_norm)[0])
        coef = dtype(1) / (dtype(norm_dev) + dtype(1e-6)) * dtype(max_norm)
        coef = min(coef, dtype(1))
        for d, g in zip(dev, gs):
            same_bits(cp.asnumpy(d), g * coef, "grads")
