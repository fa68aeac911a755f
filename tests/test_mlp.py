"""optkern.nn.MLP: gradient, exact HVP (R-operator) and GGN against finite
differences and densely assembled references, in float64."""

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP

ACTS = ["tanh", "relu", "gelu", "sigmoid", "softplus"]


def make(act="tanh", norm=None, loss="cross_entropy", sizes=(12, 40, 32, 6), n=64, seed=0, **kw):
    model = MLP(list(sizes), activation=act, norm=norm, loss=loss, dtype=np.float64, **kw)
    rng = np.random.default_rng(seed)
    # Perturb the init so biases, gamma and beta are generic (not 0 / 1).
    params = model.init_params(seed) + 0.1 * rng.standard_normal(model.num_params)
    x = rng.standard_normal((n, sizes[0]))
    y = rng.integers(0, sizes[-1], n) if loss == "cross_entropy" else rng.standard_normal((n, sizes[-1]))
    return model, params, x, y, rng


def fd_grad(model, p, x, y, v, h=1e-6):
    return (model.loss(p + h * v, x, y) - model.loss(p - h * v, x, y)) / (2 * h)


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_layout_is_one_flat_buffer_with_views():
    model = MLP([5, 7, 3], norm="batch", dtype=np.float64)
    p = model.init_params(0)
    assert p.shape == (5 * 7 + 7 + 7 + 7 + 3 * 7 + 3,) == (model.num_params,)
    V = model.views(p)
    assert [sorted(layer) for layer in V] == [["W", "b", "beta", "gamma"], ["W", "b"]]
    assert V[0]["W"].shape == (7, 5) and V[1]["W"].shape == (3, 7)
    V[1]["b"][...] = 42.0
    assert np.all(p[-3:] == 42.0)  # views write through to the flat buffer
    assert np.all(V[0]["gamma"] == 1) and np.all(V[0]["beta"] == 0)
    W = model.views(model.init_params(1))[0]["W"]
    assert abs(W.std() - np.sqrt(2 / 12)) < 0.1  # Xavier for tanh: 2 / (5 + 7)
    np.testing.assert_array_equal(model.init_params(3), model.init_params(3))


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_gradient_matches_finite_differences(norm, loss):
    model, p, x, y, rng = make("gelu", norm, loss, label_smoothing=0.1 if loss == "cross_entropy" else 0.0)
    l, g = model.loss_and_grad(p, x, y)
    assert g.shape == p.shape and abs(float(l) - float(model.loss(p, x, y))) < 1e-14
    for _ in range(3):
        v = rng.standard_normal(p.shape)
        v /= np.linalg.norm(v)
        d = fd_grad(model, p, x, y, v)
        assert abs(g @ v - d) <= 1e-7 * np.linalg.norm(g)


CASES = [(a, None, "cross_entropy", {}) for a in ACTS] + [
    ("tanh", "batch", "cross_entropy", {}),
    ("relu", "batch", "cross_entropy", {}),
    ("gelu", "layer", "cross_entropy", {}),
    ("sigmoid", "layer", "mse", {}),
    ("softplus", "batch", "mse", {}),
    ("tanh", None, "mse", {}),
    ("tanh", None, "cross_entropy", {"label_smoothing": 0.2}),
    ("gelu", "batch", "cross_entropy", {"label_smoothing": 0.1, "confidence_penalty": 0.3}),
]


@pytest.mark.parametrize("act,norm,loss,kw", CASES)
def test_hvp_matches_finite_differences_of_gradients(act, norm, loss, kw):
    model, p, x, y, rng = make(act, norm, loss, **kw)
    fd = hessian.from_grad(lambda q: model.loss_and_grad(q, x, y)[1], p)
    for _ in range(2):
        v = rng.standard_normal(p.shape)
        hv = model.hvp(p, x, y, v)
        assert rel(hv, fd.matvec(v)) <= 1e-6


def test_hvp_is_linear_and_matches_torch_double_backward():
    torch = pytest.importorskip("torch")
    model, p, x, y, rng = make("tanh", "batch", "cross_entropy", label_smoothing=0.1)
    v = rng.standard_normal(p.shape)
    w = rng.standard_normal(p.shape)
    np.testing.assert_allclose(
        model.hvp(p, x, y, 2 * v - w), 2 * model.hvp(p, x, y, v) - model.hvp(p, x, y, w), rtol=1e-10, atol=1e-13
    )

    def torch_loss(flat):
        P, a = model.views(flat), torch.tensor(x)
        for i, layer in enumerate(P):
            a = a @ layer["W"].T + layer["b"]
            if i < len(P) - 1:
                a = torch.nn.functional.batch_norm(
                    a, None, None, layer["gamma"], layer["beta"], training=True, eps=model.norm_eps
                )
                a = torch.tanh(a)
        return torch.nn.functional.cross_entropy(a, torch.tensor(y), label_smoothing=0.1)

    pt = torch.tensor(p, requires_grad=True)
    lt = torch_loss(pt)
    (gt,) = torch.autograd.grad(lt, pt, create_graph=True)
    (ht,) = torch.autograd.grad(gt @ torch.tensor(v), pt)
    l, g = model.loss_and_grad(p, x, y)
    np.testing.assert_allclose(l, lt.item(), rtol=1e-13)
    np.testing.assert_allclose(g, gt.detach().numpy(), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(model.hvp(p, x, y, v), ht.numpy(), rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def dense():
    """A ~2,000-parameter tanh MLP with its Hessian from HVPs on basis vectors."""
    model, p, x, y, rng = make("tanh", None, "cross_entropy")
    n = model.num_params
    assert 2000 <= n <= 5000
    eye = np.eye(n)
    H = np.stack([model.hvp(p, x, y, eye[i]) for i in range(n)], axis=1)
    return model, p, x, y, H


def test_dense_hessian_is_symmetric_and_matches_finite_differences(dense):
    model, p, x, y, H = dense
    scale = np.abs(H).max()
    assert np.abs(H - H.T).max() <= 1e-12 * scale
    fd = hessian.from_grad(lambda q: model.loss_and_grad(q, x, y)[1], p)
    cols = np.random.default_rng(1).choice(H.shape[0], 40, replace=False)
    Hfd = np.stack([fd.matvec(np.eye(H.shape[0])[i]) for i in cols], axis=1)
    assert rel(H[:, cols], Hfd) <= 1e-6


@pytest.mark.parametrize(
    "act,norm,loss", [("tanh", None, "cross_entropy"), ("gelu", "batch", "cross_entropy"), ("sigmoid", "layer", "mse")]
)
def test_ggn_is_psd_and_matches_dense_jt_hl_j(act, norm, loss):
    model, p, x, y, rng = make(act, norm, loss, sizes=(6, 16, 12, 4), n=24)
    n = model.num_params
    eye = np.eye(n)
    G = np.stack([model.ggn_vp(p, x, y, eye[i]) for i in range(n)], axis=1)
    J = np.stack([model.jvp(p, x, eye[i]).ravel() for i in range(n)], axis=1)  # (N*C, n)
    out = model.predict(p, x)
    N, C = out.shape
    if loss == "mse":
        HL = np.eye(N * C) * 2 / (N * C)
    else:
        z = out - out.max(axis=1, keepdims=True)
        P = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        HL = np.zeros((N * C, N * C))
        for i in range(N):
            HL[i * C : (i + 1) * C, i * C : (i + 1) * C] = (np.diag(P[i]) - np.outer(P[i], P[i])) / N
    want = J.T @ HL @ J
    np.testing.assert_allclose(G, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    ev = np.linalg.eigvalsh((G + G.T) / 2)
    assert ev.min() >= -1e-10 * ev.max()
    # The Hessian differs from the GGN (the second-order network term is not zero).
    Hd = np.stack([model.hvp(p, x, y, eye[i]) for i in range(n)], axis=1)
    assert rel(G, Hd) > 1e-3


def test_from_mlp_batches_mean_and_progress():
    model, p, x, y, rng = make("tanh", None, "cross_entropy", n=60)
    v = rng.standard_normal(p.shape)
    seen = []
    op = hessian.from_mlp(
        model, p, batches=[(x[:20], y[:20]), (x[20:], y[20:])], progress=lambda i, n: seen.append((i, n))
    )
    # Without batch norm the mean loss over rows splits exactly into batches.
    np.testing.assert_allclose(op.matvec(v), model.hvp(p, x, y, v), rtol=1e-11, atol=1e-14)
    assert seen == [(1, 2), (2, 2)]
    s = hessian.from_mlp(model, p, batches=[(x[:20], y[:20]), (x[20:], y[20:])], reduction="sum")
    np.testing.assert_allclose(
        s.matvec(v), model.hvp(p, x[:20], y[:20], v) + model.hvp(p, x[20:], y[20:], v), rtol=1e-12
    )
    g = hessian.from_mlp(model, p, x, y, kind="ggn")
    np.testing.assert_allclose(g @ v, model.ggn_vp(p, x, y, v), rtol=1e-14)


def test_float32_model_runs_and_agrees_with_float64():
    m64, p, x, y, rng = make("gelu", "layer", "cross_entropy")
    m32 = MLP(m64.sizes, activation="gelu", norm="layer", dtype=np.float32)
    v = rng.standard_normal(p.shape)
    p32, x32, v32 = p.astype(np.float32), x.astype(np.float32), v.astype(np.float32)
    l32, g32 = m32.loss_and_grad(p32, x32, y)
    l64, g64 = m64.loss_and_grad(p, x, y)
    assert g32.dtype == np.float32
    assert abs(float(l32) - float(l64)) < 1e-5 and rel(g32, g64) < 1e-4
    assert rel(m32.hvp(p32, x32, y, v32), m64.hvp(p, x, y, v)) < 1e-3
    assert 0.0 <= m32.accuracy(p32, x32, y) <= 1.0


def test_mlp_rejects_bad_input():
    model, p, x, y, rng = make()
    with pytest.raises(ValueError, match="activation"):
        MLP([3, 2], activation="swish")
    with pytest.raises(ValueError, match="norm"):
        MLP([3, 2], norm="group")
    with pytest.raises(ValueError, match="sizes"):
        MLP([3])
    with pytest.raises(TypeError, match="params: expected float64, got float32"):
        model.loss(p.astype(np.float32), x, y)
    with pytest.raises(ValueError, match="params: expected shape"):
        model.loss(p[:-1], x, y)
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 12\)"):
        model.loss(p, x[:, :5], y)
    with pytest.raises(ValueError, match="y: expected integer labels"):
        model.loss(p, x, y[:-1])
    with pytest.raises(ValueError, match=r"^y: values must be in \[0, "):  # (the caller's name for them)
        model.loss(p, x, y + 100)
    with pytest.raises(TypeError, match="v: expected float64"):
        model.hvp(p, x, y, p.astype(np.float32))
    with pytest.raises(TypeError, match="x: expected a numpy or cupy array"):
        model.loss(p, x.tolist(), y)


@pytest.mark.parametrize("axis", [0, 1])
def test_generic_and_native_normalization_agree(axis):
    from optkern.nn import normalization as nz

    rng = np.random.default_rng(axis)
    h, dy = rng.standard_normal((33, 17)), rng.standard_normal((33, 17))
    gamma, beta = rng.standard_normal(17), rng.standard_normal(17)
    y, saved = nz.norm_forward(h, gamma, beta, 1e-5, axis)
    y_ref, (xhat, rstd) = nz._generic_forward(h, gamma, beta, 1e-5, axis)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(saved.xhat, xhat, rtol=1e-12, atol=1e-12)
    generic = nz.Saved(h, None, xhat, rstd, axis)
    for got, want in zip(nz.norm_backward(dy, gamma, saved, axis), nz.norm_backward(dy, gamma, generic, axis)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
