"""Native nn kernels (activations with f', f''; softmax cross-entropy fwd / bwd / R-op)
against independent float64 NumPy references, finite differences and PyTorch."""

import math

import numpy as np
import pytest

from optkern import _backend
from optkern.nn import ACTIVATIONS, activation, softmax_cross_entropy
from optkern.nn.losses import xent_forward, xent_rop

SIZES = [0, 1, 7, 1023]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}

_erf = np.vectorize(math.erf)


def ref_activation(kind, z):
    """(f, f', f'') in float64, written from the textbook formulas."""
    z = z.astype(np.float64)
    if kind == "identity":
        return z, np.ones_like(z), np.zeros_like(z)
    if kind == "tanh":
        t = np.tanh(z)
        return t, 1 / np.cosh(z) ** 2, -2 * t / np.cosh(z) ** 2
    if kind == "relu":
        return np.maximum(z, 0), (z > 0).astype(float), np.zeros_like(z)
    if kind == "gelu":
        cdf = 0.5 * (1 + _erf(z / np.sqrt(2))) if z.size else z
        pdf = np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
        return z * cdf, cdf + z * pdf, pdf * (2 - z * z)
    s = 1 / (1 + np.exp(-z))
    if kind == "sigmoid":
        return s, s * (1 - s), s * (1 - s) * (1 - 2 * s)
    if kind == "softplus":
        return np.logaddexp(0, z), s, s * (1 - s)
    raise AssertionError(kind)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_matches_reference(kind, n, dtype):
    rng = np.random.default_rng(n + 17)
    z = (rng.standard_normal(n) * 3).astype(dtype)
    a, d1, d2 = activation(kind, z, order=2)
    ra, r1, r2 = ref_activation(kind, z)
    for got, want in ((a, ra), (d1, r1), (d2, r2)):
        assert got.dtype == dtype and got.shape == z.shape
        np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_derivatives_by_finite_differences(kind):
    rng = np.random.default_rng(3)
    z = rng.standard_normal(301) * 2
    z = z[np.abs(z) > 1e-3]  # stay off relu's kink
    h = 1e-6
    f, d1, d2 = activation(kind, z, order=2)
    fp, d1p, _ = activation(kind, z + h, order=2)
    fm, d1m, _ = activation(kind, z - h, order=2)
    np.testing.assert_allclose(d1, (fp - fm) / (2 * h), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(d2, (d1p - d1m) / (2 * h), rtol=1e-6, atol=1e-7)


def test_activation_orders_and_shapes():
    z = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    a = activation("tanh", z)
    assert a.shape == (5, 7)
    a1, d1 = activation("tanh", z, order=1)
    np.testing.assert_array_equal(a, a1)
    assert d1.shape == (5, 7)


def test_activation_large_inputs_are_finite():
    z = np.array([-1e4, -50, 50, 1e4], dtype=np.float32)
    for kind in ACTIVATIONS:
        for out in activation(kind, z, order=2):
            assert np.all(np.isfinite(out)), kind


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e30), (np.float64, 1e200)])
def test_activation_limits_far_out(dtype, big):
    """Past where e^z underflows and z^2 overflows, f, f', f'' take their limits: sigmoid and softplus
    at -big were 1e-38 (e^z clamped, not flushed) and GELU's f'' at +-big was -inf (0 * (2 - inf))."""
    z = np.array([-big, -1000.0, 1000.0, big], dtype)
    limits = {
        "tanh": ([-1, -1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]),
        "sigmoid": ([0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]),
        "softplus": ([0, 0, 1000, big], [0, 0, 1, 1], [0, 0, 0, 0]),
        "gelu": ([0, 0, 1000, big], [0, 0, 1, 1], [0, 0, 0, 0]),
    }
    for kind, want in limits.items():
        for order, (got, w) in enumerate(zip(activation(kind, z, order=2), want)):
            np.testing.assert_array_equal(got, np.asarray(w, dtype), err_msg=f"{kind} f^({order})")


def test_activation_rejects_bad_input():
    mod = _backend.cpu
    z = np.ones(8, dtype=np.float32)
    with pytest.raises(ValueError, match="activation"):
        activation("swish", z)
    with pytest.raises(TypeError, match="z: expected float32 or float64"):
        activation("tanh", np.ones(8, dtype=np.int32))
    with pytest.raises(TypeError, match="a: expected float32, got float64"):
        mod.activation_fwd("tanh", z, np.ones(8))
    with pytest.raises(ValueError, match=r"d1: expected shape \(8,\)"):
        mod.activation_fwd("tanh", z, np.ones(8, np.float32), np.ones(9, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        mod.activation_fwd("tanh", np.ones(16, np.float32)[::2], np.ones(8, np.float32))
    ro = np.ones(8, np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="a: array is read-only"):
        mod.activation_fwd("tanh", z, ro)
    out = np.ones(8, np.float32)
    with pytest.raises(ValueError, match="shares memory"):
        mod.activation_fwd("tanh", z, out, out)
    with pytest.raises(ValueError, match="unknown activation"):
        mod.activation_fwd("nope", z, out)


# ---- softmax cross-entropy ---------------------------------------------------


def ref_xent(z, y, eps, beta):
    """Row losses, gradient and log-probabilities in float64."""
    z = z.astype(np.float64)
    n, c = z.shape
    zs = z - z.max(axis=1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    q = np.full((n, c), eps / c)
    q[np.arange(n), y] += 1 - eps
    H = -(p * logp).sum(axis=1)
    loss = -(q * logp).sum(axis=1) - beta * H
    grad = p - q + beta * p * (logp + H[:, None])
    return loss, grad, logp


def ref_xent_hessian_fd(z, y, eps, beta, r, h=1e-6):
    _, gp, _ = ref_xent(z + h * r, y, eps, beta)
    _, gm, _ = ref_xent(z - h * r, y, eps, beta)
    return (gp - gm) / (2 * h)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (7, 5), (33, 1023)])
@pytest.mark.parametrize("eps,beta", [(0.0, 0.0), (0.1, 0.0), (0.2, 0.3)])
def test_xent_forward_backward_matches_reference(shape, dtype, eps, beta):
    n, c = shape
    rng = np.random.default_rng(n * 31 + c)
    z = (rng.standard_normal(shape) * 4).astype(dtype)
    y = rng.integers(0, c, n)
    loss, logp, g = xent_forward(z, y, label_smoothing=eps, confidence_penalty=beta, scale=0.5)
    rl, rg, rlogp = ref_xent(z, y, eps, beta)
    tol = dict(rtol=1e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(loss, rl, **tol)
    np.testing.assert_allclose(logp, rlogp, **tol)
    np.testing.assert_allclose(g, 0.5 * rg, **tol)


@pytest.mark.parametrize("eps,beta", [(0.0, 0.0), (0.15, 0.0), (0.1, 0.4), (0.0, -0.2)])
def test_xent_rop_matches_finite_differences_of_the_gradient(eps, beta):
    rng = np.random.default_rng(5)
    z = rng.standard_normal((9, 7)) * 2
    y = rng.integers(0, 7, 9)
    r = rng.standard_normal((9, 7))
    _, logp, _ = xent_forward(z, y, label_smoothing=eps, confidence_penalty=beta)
    got = xent_rop(logp, r, confidence_penalty=beta, scale=2.0)
    want = 2.0 * ref_xent_hessian_fd(z, y, eps, beta, r)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-8)


def test_xent_rop_float32_and_saturated_rows():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((33, 1023)) * 3
    z[0, 5] = 500.0  # p underflows to 0 for all other classes of row 0
    y = rng.integers(0, 1023, 33)
    r = rng.standard_normal(z.shape)
    _, logp64, _ = xent_forward(z, y, confidence_penalty=0.1)
    want = xent_rop(logp64, r, confidence_penalty=0.1)
    assert np.all(np.isfinite(want))
    _, logp32, _ = xent_forward(z.astype(np.float32), y, confidence_penalty=0.1)
    got = xent_rop(logp32, r.astype(np.float32), confidence_penalty=0.1)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-6)


def test_xent_gradient_matches_finite_differences_of_the_loss():
    """dlogits (with label smoothing and the confidence penalty) is the derivative of scale * sum(row losses)."""
    rng = np.random.default_rng(21)
    z = 2 * rng.standard_normal((7, 5))
    y = rng.integers(0, 5, 7)
    eps, beta, scale, h = 0.1, 0.3, 0.5, 1e-6
    loss, _, g = xent_forward(z, y, label_smoothing=eps, confidence_penalty=beta, scale=scale)
    assert g.shape == z.shape and g.dtype == np.float64
    np.testing.assert_allclose(loss, ref_xent(z, y, eps, beta)[0], rtol=1e-12, atol=1e-13)

    def lib_loss(zz):
        return (
            scale
            * xent_forward(zz, y, label_smoothing=eps, confidence_penalty=beta, need_logp=False, need_grad=False)[
                0
            ].sum()
        )

    def ref_loss(zz):
        return scale * ref_xent(zz, y, eps, beta)[0].sum()

    for fn in (ref_loss, lib_loss):  # the independent loss, and the kernel's own loss
        fd = np.empty_like(z)
        for idx in np.ndindex(z.shape):
            e = np.zeros_like(z)
            e[idx] = h
            fd[idx] = (fn(z + e) - fn(z - e)) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-8, err_msg=fn.__name__)


@pytest.mark.parametrize("beta", [0.0, 0.3])
@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (7, 5), (3, 1023)])
def test_xent_rop_shapes_float64_and_float32_match_finite_differences(shape, beta):
    n, c = shape
    rng = np.random.default_rng(n * 1031 + c + int(10 * beta))
    z = 2 * rng.standard_normal(shape)
    y = rng.integers(0, c, n)
    r = rng.standard_normal(shape)
    eps, scale = 0.1, 0.5
    want = scale * ref_xent_hessian_fd(z, y, eps, beta, r)
    # float64, from the independent reference's log-probabilities and from the kernel's own
    _, _, logp_ref = ref_xent(z, y, eps, beta)
    _, logp64, _ = xent_forward(z, y, label_smoothing=eps, confidence_penalty=beta)
    for logp in (logp_ref, logp64):
        got = xent_rop(np.ascontiguousarray(logp), r, confidence_penalty=beta, scale=scale)
        assert got.shape == shape and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-8)
    # float32 against the float64 finite differences
    _, logp32, _ = xent_forward(z.astype(np.float32), y, label_smoothing=eps, confidence_penalty=beta)
    got32 = xent_rop(logp32, r.astype(np.float32), confidence_penalty=beta, scale=scale)
    assert got32.shape == shape and got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=0, atol=2e-5 * np.abs(want).max(initial=0.0) + 1e-12)


def test_xent_public_functions_reject_bad_input():
    y = np.array([0, 1, 2, 0])
    with pytest.raises(TypeError, match="logits: expected float32 or float64"):
        xent_forward(np.ones((4, 3), np.float16), y)
    with pytest.raises(TypeError, match="logits: expected float32 or float64"):
        softmax_cross_entropy(np.ones((4, 3), np.float16), y)
    with pytest.raises(ValueError, match="logits: array must be C-contiguous"):
        xent_forward(np.zeros((4, 6))[:, ::2], y)
    with pytest.raises(ValueError, match="logits: array must be C-contiguous"):
        softmax_cross_entropy(np.zeros((4, 6))[:, ::2], y)
    logp = np.log(np.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"^r: expected shape \(4, 3\), got \(4, 4\)"):
        xent_rop(logp, np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"^r: expected shape \(4, 3\), got \(12,\)"):
        xent_rop(logp, np.ones(12))
    with pytest.raises(TypeError, match="^r: expected float64, got float32"):
        xent_rop(logp, np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="^r: array must be C-contiguous"):
        xent_rop(logp, np.ones((4, 6))[:, ::2])
    z = np.random.default_rng(8).standard_normal((4, 3))
    for bad in (math.nan, math.inf, -math.inf):
        for name in ("label_smoothing", "confidence_penalty", "scale"):
            with pytest.raises(ValueError, match=f"^{name}: must be finite"):
                xent_forward(z, y, **{name: bad})
        for name in ("label_smoothing", "confidence_penalty"):
            with pytest.raises(ValueError, match=f"^{name}: must be finite"):
                softmax_cross_entropy(z, y, **{name: bad})
        for name in ("confidence_penalty", "scale"):
            with pytest.raises(ValueError, match=f"^{name}: must be finite"):
                xent_rop(logp, z, **{name: bad})


def test_softmax_cross_entropy_reductions():
    rng = np.random.default_rng(9)
    z = rng.standard_normal((10, 4))
    y = rng.integers(0, 4, 10)
    rows = softmax_cross_entropy(z, y, reduction="none")
    assert rows.shape == (10,)
    np.testing.assert_allclose(softmax_cross_entropy(z, y), rows.mean(), rtol=1e-14)
    np.testing.assert_allclose(softmax_cross_entropy(z, y, reduction="sum"), rows.sum(), rtol=1e-14)
    with pytest.raises(ValueError, match="reduction"):
        softmax_cross_entropy(z, y, reduction="avg")


def test_xent_rejects_bad_input():
    mod = _backend.cpu
    z = np.zeros((4, 3))
    loss = np.zeros(4)
    with pytest.raises(ValueError, match=r"labels: values must be in \[0, 3\)"):
        softmax_cross_entropy(z, np.array([0, 1, 3, 0]))
    with pytest.raises(TypeError, match="labels: expected an integer array"):
        softmax_cross_entropy(z, np.zeros(4))
    with pytest.raises(ValueError, match="label_smoothing"):
        softmax_cross_entropy(z, np.zeros(4, int), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"labels\[2\]: 7 is outside \[0, 3\)"):
        mod.softmax_xent_fwd(z, np.array([0, 1, 7, 0]), loss)
    with pytest.raises(ValueError, match="labels: expected shape"):
        mod.softmax_xent_fwd(z, np.array([0, 1, 2]), loss)
    with pytest.raises(ValueError, match="logits: expected a 2-D"):
        mod.softmax_xent_fwd(np.zeros(4), np.array([0, 1, 2, 0]), loss)
    with pytest.raises(ValueError, match="shares memory"):
        mod.softmax_xent_fwd(z, np.array([0, 1, 2, 0]), loss, z, None)
    with pytest.raises(ValueError, match="label_smoothing"):
        mod.softmax_xent_fwd(z, np.array([0, 1, 2, 0]), loss, None, None, -0.1)
    with pytest.raises(ValueError, match=r"out: expected shape \(4, 3\)"):
        mod.softmax_xent_rop(z, z.copy(), np.zeros((3, 4)))


# ---- PyTorch cross-checks ----------------------------------------------------


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_matches_torch(kind):
    torch = pytest.importorskip("torch")
    fn = {
        "identity": lambda t: t,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "gelu": torch.nn.functional.gelu,
        "sigmoid": torch.sigmoid,
        "softplus": torch.nn.functional.softplus,
    }[kind]
    z = np.random.default_rng(1).standard_normal(1023) * 3
    z = z[np.abs(z) > 1e-6]
    zt = torch.tensor(z, requires_grad=True)
    f = fn(zt)
    (d1,) = torch.autograd.grad(f.sum(), zt, create_graph=True)
    d2 = torch.autograd.grad(d1.sum(), zt, allow_unused=True)[0] if d1.requires_grad else None
    a, g1, g2 = activation(kind, z, order=2)
    np.testing.assert_allclose(a, f.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g1, d1.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g2, np.zeros_like(z) if d2 is None else d2.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_xent_matches_torch(eps):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    z = rng.standard_normal((17, 11)) * 3
    y = rng.integers(0, 11, 17)
    r = rng.standard_normal(z.shape)
    zt = torch.tensor(z, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(zt, torch.tensor(y), label_smoothing=eps)
    (gt,) = torch.autograd.grad(lt, zt, create_graph=True)
    (ht,) = torch.autograd.grad((gt * torch.tensor(r)).sum(), zt)
    loss, logp, g = xent_forward(z, y, label_smoothing=eps, scale=1 / 17)
    np.testing.assert_allclose(loss.mean(), lt.item(), rtol=1e-13)
    np.testing.assert_allclose(g, gt.detach().numpy(), rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(xent_rop(logp, r, scale=1 / 17), ht.numpy(), rtol=1e-10, atol=1e-14)
