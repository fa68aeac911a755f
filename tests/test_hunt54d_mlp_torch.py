"""optkern.nn.MLP's loss, gradient, Hessian and Gauss-Newton products against PyTorch autograd
(54th hunt, d): the same network built in torch from the MLP's own flat parameters (float64), its
Hessian by ``torch.autograd.functional.hessian`` and its GGN as ``J^T H_L J`` from torch's Jacobian of
the outputs and torch's Hessian of the loss in them -- none of it from optkern. Every activation, norm
(train-mode batch norm: the products differentiate through the batch statistics) and loss (with label
smoothing and the confidence penalty), odd widths (1, 5, 17) and batches (1, 7, 33), float64 and
float32; and ``hessian.from_mlp``'s operator (batches, reduction, layer blocks, ``fixed``) alike.

The MLP has no bias-free layers, no eval-mode batch norm and no weight decay term: those are not
part of its objective, so they are not compared here."""

import itertools

import numpy as np
import pytest

from optkern import hessian
from optkern.hessian.mlp_operator import block_indices
from optkern.nn import MLP

torch = pytest.importorskip("torch")
F = torch.nn.functional
torch.set_num_threads(1)

ACT = {
    "identity": lambda z: z,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": F.gelu,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
}
LOSSES = {
    "xent": dict(loss="cross_entropy"),
    "xent_smooth_penalty": dict(loss="cross_entropy", label_smoothing=0.2, confidence_penalty=0.3),
    "mse": dict(loss="mse"),
}


def torch_output(m: MLP, flat, x):
    """The MLP's output in torch, read from the flat parameters through the MLP's own layout."""
    P, a = m.views(flat), x
    for i, layer in enumerate(P):
        a = a @ layer["W"].T + layer["b"]
        if i < len(P) - 1:
            if m.norm == "batch":
                a = F.batch_norm(a, None, None, layer["gamma"], layer["beta"], training=True, eps=m.norm_eps)
            elif m.norm == "layer":
                a = F.layer_norm(a, (a.shape[1],), layer["gamma"], layer["beta"], eps=m.norm_eps)
            a = ACT[m.activation](a)
    return a


def torch_loss(m: MLP, z, y):
    """torch's mean loss of outputs ``z``: cross-entropy (label smoothing, minus beta times the
    softmax entropy) or MSELoss."""
    if m.loss_kind == "mse":
        return F.mse_loss(z, y)
    loss = F.cross_entropy(z, y, label_smoothing=m.label_smoothing)
    if m.confidence_penalty:
        logp = F.log_softmax(z, 1)
        loss = loss + m.confidence_penalty * (logp.exp() * logp).sum(1).mean()
    return loss


def problem(sizes, act, norm, loss, n, dtype, seed):
    rng = np.random.default_rng(seed)
    m = MLP(sizes, activation=act, norm=norm, dtype=dtype, **LOSSES[loss])
    p = m.init_params(seed)
    p += (0.3 * rng.standard_normal(p.shape)).astype(dtype)  # (gamma != 1, beta and biases != 0)
    x = rng.standard_normal((n, sizes[0])).astype(dtype)
    if m.loss_kind == "mse":
        y = rng.standard_normal((n, sizes[-1])).astype(dtype)
    else:
        y = rng.integers(0, sizes[-1], n)
    return m, p, x, y


def as_torch(a):
    return torch.tensor(a) if a.dtype.kind in "iu" else torch.tensor(a, dtype=torch.float64)


def torch_curvature(m, p, batches, weights):
    """(loss, grad, Hessian, GGN) of ``sum_b w_b loss_b`` in float64 torch."""
    pt = torch.tensor(p, dtype=torch.float64)
    tb = [(as_torch(x), as_torch(y)) for x, y in batches]

    def objective(q):
        return sum(w * torch_loss(m, torch_output(m, q, x), y) for (x, y), w in zip(tb, weights))

    q = pt.clone().requires_grad_()
    loss = objective(q)
    (grad,) = torch.autograd.grad(loss, q)
    H = torch.autograd.functional.hessian(objective, pt, vectorize=True).numpy()
    G = np.zeros_like(H)
    for (x, y), w in zip(tb, weights):
        z = torch_output(m, pt, x)
        J = torch.autograd.functional.jacobian(lambda q, x=x: torch_output(m, q, x), pt, vectorize=True)
        J = J.reshape(z.numel(), -1).numpy()
        HL = torch.autograd.functional.hessian(
            lambda u, z=z, y=y: torch_loss(m, u.reshape(z.shape), y), z.reshape(-1), vectorize=True
        )
        HL = HL.numpy()
        G += w * (J.T @ HL @ J)
    return loss.item(), grad.numpy(), H, G


def close(got, want, dtype, of=None):
    """Max error relative to the largest entry of the reference (``of``: of the matrix whose column
    ``want`` is -- a column may be zero but for torch's rounding): float64 to 1e-10, float32 to 3e-5."""
    tol = 1e-10 if dtype == np.float64 else 3e-5
    scale = max(float(np.abs(want if of is None else of).max()), 1e-300)
    err = float(np.abs(np.asarray(got, np.float64) - want).max()) / scale
    assert err <= tol, err


SHAPES = [((3, 5, 2), 7), ((2, 1, 3), 33), ((1, 17, 1), 7), ((4, 5, 1, 3), 33), ((3, 2), 1), ((2, 5, 3), 1)]


@pytest.mark.parametrize("act", sorted(ACT))
@pytest.mark.parametrize("norm", [None, "batch", "layer"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_products_are_torchs_hessian_and_ggn_float64(act, norm, loss):
    shapes = [(s, n) for s, n in SHAPES if not (n == 1 and norm == "batch" and len(s) > 2)]
    for i, (sizes, n) in enumerate(shapes):
        m, p, x, y = problem(sizes, act, norm, loss, n, np.float64, i)
        lt, gt, Ht, Gt = torch_curvature(m, p, [(x, y)], [1.0])
        loss_, grad = m.loss_and_grad(p, x, y)
        assert float(loss_) == pytest.approx(lt, rel=1e-13, abs=1e-15)
        close(grad, gt, np.float64)
        eye = np.eye(m.num_params)
        close(m.hvp_block(p, x, y, eye), Ht, np.float64)  # (rows: H is symmetric)
        close(m.ggn_block(p, x, y, eye), Gt, np.float64)
        j = i % m.num_params
        close(m.hvp(p, x, y, eye[j]), Ht[:, j], np.float64, of=Ht)
        close(m.ggn_vp(p, x, y, eye[j]), Gt[:, j], np.float64, of=Gt)


@pytest.mark.parametrize("act, norm, loss", [(a, n, "xent_smooth_penalty") for a in ACT for n in (None, "batch")])
def test_float32_products_to_float32_rounding(act, norm, loss):
    """A float32 model's products against torch's float64 curvature at the same (float32) values."""
    m, p, x, y = problem((4, 5, 3), act, norm, loss, 33, np.float32, 3)
    _, gt, Ht, Gt = torch_curvature(m, p, [(x, y)], [1.0])
    close(m.loss_and_grad(p, x, y)[1], gt, np.float32)
    eye = np.eye(m.num_params, dtype=np.float32)
    H, G = m.hvp_block(p, x, y, eye), m.ggn_block(p, x, y, eye)
    assert H.dtype == G.dtype == np.float32
    close(H, Ht, np.float32)
    close(G, Gt, np.float32)


@pytest.mark.parametrize(
    "norm, kind, reduction, fixed, block",
    [
        (norm, kind, red, fixed, block)
        for norm, kind, red, (fixed, block) in itertools.product(
            [None, "batch", "layer"],
            ["hessian", "ggn"],
            ["mean", "sum"],
            [(False, None), (True, "layer2"), (False, ("layer1", "layer3"))],
        )
    ],
)
def test_from_mlp_operator_is_torchs_curvature(norm, kind, reduction, fixed, block):
    """Batches of 7, 2 and 5 rows (batch norm normalizes each batch by its own statistics): the
    curvature of ``sum_b w_b loss_b``, ``w_b = n_b / 14`` ("mean") or 1 ("sum"), restricted to the
    block's parameters; matvec, matvec into ``out`` and matmat (blocks of 4 vectors) alike."""
    rng = np.random.default_rng(11)
    m = MLP((4, 5, 3, 3), activation="softplus", norm=norm, dtype=np.float64, label_smoothing=0.1)
    p = m.init_params(2) + 0.1
    batches = [(rng.standard_normal((k, 4)), rng.integers(0, 3, k)) for k in (7, 2, 5)]
    weights = [len(x) / 14 if reduction == "mean" else 1.0 for x, _ in batches]
    _, _, Ht, Gt = torch_curvature(m, p, batches, weights)
    want = Ht if kind == "hessian" else Gt
    if block is not None:
        idx = block_indices(m, block)
        want = want[np.ix_(idx, idx)]
    op = hessian.from_mlp(m, p, batches=batches, kind=kind, reduction=reduction, fixed=fixed, block=block, block_size=4)
    n = op.shape[0]
    assert want.shape == (n, n)
    eye = np.eye(n)
    close(np.stack([op @ eye[:, i] for i in range(n)], axis=1), want, np.float64)
    out = np.empty(n)
    close(np.stack([op.matvec(eye[:, i], out=out).copy() for i in range(n)], axis=1), want, np.float64)
    close(op.matmat(eye), want, np.float64)


def test_jvp_is_torchs_forward_derivative():
    """``MLP.jvp`` (the R-forward pass: J v) against torch's, through train-mode batch norm."""
    m, p, x, _ = problem((3, 5, 5, 2), "gelu", "batch", "xent", 7, np.float64, 4)
    v = np.random.default_rng(5).standard_normal(m.num_params)
    xt = torch.tensor(x)
    _, jt = torch.autograd.functional.jvp(lambda q: torch_output(m, q, xt), torch.tensor(p), torch.tensor(v))
    close(m.jvp(p, x, v), jt.numpy(), np.float64)
