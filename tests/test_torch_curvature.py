"""optkern.torch.hessian_operator: a torch model's loss Hessian as an optkern operator, against the
Hessian torch.autograd.functional.hessian forms explicitly (float64) and its eigenvalues."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from optkern import hessian  # noqa: E402
from torch_common import gpu  # noqa: E402 (after the torch skip)

torch.set_num_threads(1)
F = torch.nn.functional


def model(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).to(dtype)


def data(dtype=torch.float64, n=21):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


def unflatten(flat, like: list) -> list:
    """``flat`` cut into views shaped like the tensors of ``like``, in order."""
    out, o = [], 0
    for p in like:
        out.append(flat[o : o + p.numel()].view(p.shape))
        o += p.numel()
    return out


def explicit(m, x, y) -> np.ndarray:
    """The float64 Hessian of the mean cross-entropy in the flattened params (torch forms it)."""
    ps = [p.detach().double() for p in m.parameters()]

    def loss(flat):
        ws = unflatten(flat, ps)
        h = torch.tanh(x.double() @ ws[0].T + ws[1])
        return F.cross_entropy(h @ ws[2].T + ws[3], y)

    return torch.autograd.functional.hessian(loss, torch.cat([p.reshape(-1) for p in ps])).numpy()


def dense(op) -> np.ndarray:
    n = op.shape[0]
    return np.stack([op @ np.eye(n, dtype=op.dtype)[:, i] for i in range(n)], axis=1)


def test_products_are_the_hessians_columns_float64():
    m = model()
    x, y = data()
    H = ot.hessian_operator(lambda: F.cross_entropy(m(x), y), m.parameters())
    ref = explicit(m, x, y)
    assert H.shape == ref.shape == (66, 66) and H.dtype == np.float64
    got = dense(H)
    assert np.abs(got - ref).max() <= 1e-12 * np.abs(ref).max()
    assert all(p.grad is None for p in m.parameters())  # products leave .grad alone


def test_float32_model_to_float32_rounding():
    m = model(torch.float32)
    x, y = data(torch.float32)
    H = ot.hessian_operator(lambda: F.cross_entropy(m(x), y), m.parameters())
    assert H.dtype == np.float32
    ref = explicit(m, x, y)
    assert np.abs(dense(H) - ref).max() <= 1e-5 * np.abs(ref).max()


def test_estimators_on_it_match_the_explicit_spectrum():
    """top eigenvalues (block Lanczos) equal eigh's; out= products write into the caller's buffer;
    SciPy's eigsh takes the operator."""
    m = model()
    x, y = data()
    H = ot.hessian_operator(lambda: F.cross_entropy(m(x), y), m.parameters())
    ev = np.linalg.eigvalsh(explicit(m, x, y))[::-1]
    top = hessian.top_eigenvalues(H, 3).eigenvalues
    assert np.allclose(top, ev[:3], rtol=1e-8, atol=0)
    v = np.random.default_rng(0).standard_normal(66)
    out = np.empty(66)
    assert H.writes_into and H.matvec(v, out=out) is out
    assert np.allclose(out, explicit(m, x, y) @ v, rtol=0, atol=1e-12)
    sla = pytest.importorskip("scipy.sparse.linalg")
    assert sla.eigsh(H, k=1, which="LA", return_eigenvectors=False)[0] == pytest.approx(ev[0], rel=1e-8)


def test_batches_average_weighted_by_size():
    """Batches of 8, 8 and 5 samples (mean losses): the Hessian of the mean loss over all 21, as one
    full batch gives it; a DataLoader is re-read for every product."""
    m = model()
    x, y = data()
    ref = explicit(m, x, y)
    parts = [(x[:8], y[:8]), (x[8:16], y[8:16]), (x[16:], y[16:])]
    H = ot.hessian_operator(lambda a, b: F.cross_entropy(m(a), b), m.parameters(), batches=parts)
    assert np.abs(dense(H) - ref).max() <= 1e-12 * np.abs(ref).max()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    H = ot.hessian_operator(lambda a, b: F.cross_entropy(m(a), b), m.parameters(), batches=loader)
    assert np.abs(dense(H) - ref).max() <= 1e-12 * np.abs(ref).max()


def test_params_the_loss_does_not_curve_give_zero_rows():
    """A param the loss does not use, and one it is linear in: zero rows and columns; the rest is
    the model's Hessian."""
    m = model()
    x, y = data()
    unused = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    linear = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    H = ot.hessian_operator(lambda: F.cross_entropy(m(x), y) + 0.5 * linear.sum(), [unused, *m.parameters(), linear])
    got = dense(H)
    assert not got[:2].any() and not got[:, :2].any() and not got[-3:].any() and not got[:, -3:].any()
    ref = explicit(m, x, y)
    assert np.abs(got[2:-3, 2:-3] - ref).max() <= 1e-12 * np.abs(ref).max()


@pytest.mark.parametrize(
    "loss_fn, params, kw, err, match",
    [
        ("loss", "model", {}, TypeError, "loss_fn"),
        (lambda: torch.ones(()), [torch.ones(3, dtype=torch.int64)], {}, TypeError, r"params\[0\]"),
        (None, lambda m: [*m.parameters(), torch.nn.Parameter(torch.ones(2))], {}, TypeError, r"params\[4\]"),
        (None, lambda m: [torch.ones(2, dtype=torch.float64)], {}, ValueError, r"params\[0\]: does not require"),
        (None, lambda m: [], {}, ValueError, "params: got an empty"),
        (None, lambda m: [m[0].weight, m[0].weight], {}, ValueError, r"params\[1\]"),
        (None, 42, {}, TypeError, "params"),
        (lambda: torch.ones(3, requires_grad=True), "model", {}, TypeError, "loss_fn"),
        (lambda: 1.5, "model", {}, TypeError, "loss_fn"),
        (lambda: torch.tensor(1.0), "model", {}, ValueError, "loss_fn.*no graph"),
        ("nan", "model", {}, ValueError, "loss_fn.*non-finite"),
        (None, "model", dict(batches=3), TypeError, "batches"),
    ],
)
def test_bad_input_refused_by_name(loss_fn, params, kw, err, match):
    m = model()
    x, y = data()
    if loss_fn is None:
        loss_fn = lambda: F.cross_entropy(m(x), y)
    elif loss_fn == "nan":
        loss_fn = lambda: F.cross_entropy(m(x), y) * float("nan")
    if params == "model":
        params = m.parameters()
    elif callable(params):
        params = params(m)
    with pytest.raises(err, match=match):
        ot.hessian_operator(loss_fn, params, **kw)


def test_bad_batches_refused_at_the_product():
    m = model()
    x, y = data()
    fn = lambda a, b: F.cross_entropy(m(a), b)
    with pytest.raises(ValueError, match="batches: got no batches"):
        ot.hessian_operator(fn, m.parameters(), batches=[]) @ np.ones(66)
    bad = [(x[:4], y[:4]), (x[4:8] * float("inf"), y[4:8])]
    with pytest.raises(ValueError, match=r"loss_fn\(\*batches\[1\]\).*non-finite"):
        ot.hessian_operator(fn, m.parameters(), batches=bad) @ np.ones(66)


@gpu
def test_cuda_matches_cpu():
    m = model()
    x, y = data()
    ref = dense(ot.hessian_operator(lambda: F.cross_entropy(m(x), y), m.parameters()))
    mc, xc, yc = m.cuda(), x.cuda(), y.cuda()
    H = ot.hessian_operator(lambda: F.cross_entropy(mc(xc), yc), mc.parameters())
    import cupy

    got = np.stack([cupy.asnumpy(H @ cupy.eye(66)[:, i]) for i in range(66)], axis=1)
    assert np.abs(got - ref).max() <= 1e-12 * np.abs(ref).max()


# ---- the generalized Gauss-Newton matrix (kind="ggn") ---------------------------------------------


def explicit_ggn(m, x, y) -> np.ndarray:
    """J^T H_z J of the mean cross-entropy, formed: J by torch's jacobian of the logits in the
    flattened params, H_z per sample (diag(p) - p p^T) / N."""
    ps = [p.detach().double() for p in m.parameters()]

    def logits(flat):
        ws = unflatten(flat, ps)
        return torch.tanh(x.double() @ ws[0].T + ws[1]) @ ws[2].T + ws[3]

    flat = torch.cat([p.reshape(-1) for p in ps])
    z = logits(flat)
    J = torch.autograd.functional.jacobian(logits, flat).reshape(z.numel(), -1).numpy()
    prob = torch.softmax(z, 1).numpy()
    H = np.zeros((z.numel(), z.numel()))
    c = z.shape[1]
    for i, q in enumerate(prob):
        H[i * c : (i + 1) * c, i * c : (i + 1) * c] = (np.diag(q) - np.outer(q, q)) / len(prob)
    return J.T @ H @ J


def _out_and_loss(m, x, y):
    z = m(x)
    return z, F.cross_entropy(z, y)


def test_ggn_products_are_its_columns_and_it_is_psd():
    m = model()
    x, y = data()
    G = ot.hessian_operator(lambda: _out_and_loss(m, x, y), m.parameters(), kind="ggn")
    ref = explicit_ggn(m, x, y)
    got = dense(G)
    assert np.abs(got - ref).max() <= 1e-12 * np.abs(ref).max()
    assert np.linalg.eigvalsh((got + got.T) / 2).min() >= -1e-12 * np.abs(ref).max()
    assert np.abs(got - explicit(m, x, y)).max() > 1e-3 * np.abs(ref).max()  # (not the Hessian here)
    assert repr(G).endswith("'torch-ggn' dtype=float64>")


def test_ggn_of_a_model_linear_in_its_params_is_the_hessian():
    """Least squares on a linear model: J^T H_z J = H exactly (the model has no curvature)."""
    torch.manual_seed(5)
    lin = torch.nn.Linear(5, 3).double()
    x, _ = data()
    t = torch.randn(len(x), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))

    def both():
        z = lin(x)
        return z, F.mse_loss(z, t)

    G = dense(ot.hessian_operator(both, lin.parameters(), kind="ggn"))
    H = dense(ot.hessian_operator(lambda: both()[1], lin.parameters()))
    assert np.abs(G - H).max() <= 1e-13 * np.abs(H).max()


def test_ggn_over_batches_weighted_by_size():
    m = model()
    x, y = data()
    parts = [(x[:8], y[:8]), (x[8:16], y[8:16]), (x[16:], y[16:])]
    G = ot.hessian_operator(lambda a, b: _out_and_loss(m, a, b), m.parameters(), batches=parts, kind="ggn")
    ref = explicit_ggn(m, x, y)
    assert np.abs(dense(G) - ref).max() <= 1e-12 * np.abs(ref).max()


@pytest.mark.parametrize(
    "fn, kw, err, match",
    [
        (lambda m, x, y: F.cross_entropy(m(x), y), dict(kind="ggn"), TypeError, r"\(outputs, loss\)"),
        (lambda m, x, y: _out_and_loss(m, x, y), dict(kind="gn"), ValueError, "kind"),
        (lambda m, x, y: (m(x).detach(), F.cross_entropy(m(x), y)), dict(kind="ggn"), ValueError, "outputs"),
        (lambda m, x, y: (m(x), m(x).sum() * 0 + m[0].bias.sum()), dict(kind="ggn"), ValueError, "outputs"),
    ],
)
def test_ggn_bad_input(fn, kw, err, match):
    m = model()
    x, y = data()
    with pytest.raises(err, match=match):
        ot.hessian_operator(lambda: fn(m, x, y), m.parameters(), **kw)


@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_made_and_used_under_no_grad(kind):
    """An optimizer's step runs under torch.no_grad (optkern.torch.NewtonCG builds its operator
    there): the operator builds its graphs with grad enabled all the same."""
    m = model()
    x, y = data()
    fn = (lambda: F.cross_entropy(m(x), y)) if kind == "hessian" else (lambda: _out_and_loss(m, x, y))
    ref = dense(ot.hessian_operator(fn, m.parameters(), kind=kind))
    with torch.no_grad():
        got = dense(ot.hessian_operator(fn, m.parameters(), kind=kind))
    assert np.array_equal(got, ref)
