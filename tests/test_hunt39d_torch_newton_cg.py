"""optkern.torch.NewtonCG over channels_last params: its preconditioner diagonal is given in the
params' logical order (as ``hessian_operator``'s vectors) and turned into the memory order the step
works in. A NumPy diagonal was; a torch tensor one (what a torch user has, and what the inner
optimizer takes as readily) was passed through in logical order: every param's elements were
preconditioned by another element's entry, and the steps differed from the same diagonal as a NumPy
array (and from contiguous params), silently."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

torch.set_num_threads(1)


def _two_steps(opt, fn, w) -> np.ndarray:
    """Two steps of ``opt`` on the loss ``fn``; ``w`` after them in logical order."""

    def closure():
        opt.zero_grad()
        loss = fn()
        loss.backward()
        return loss

    for _ in range(2):
        opt.step(closure)
    return w.detach().contiguous().numpy().copy()


def _steps(pre_kind: str, channels_last: bool) -> np.ndarray:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 3, 2, 2, dtype=torch.float64, generator=g)
    x = torch.randn(5, 3, 2, 2, dtype=torch.float64, generator=g)
    if channels_last:
        w = w.contiguous(memory_format=torch.channels_last)
    w.requires_grad_()

    def fn():
        return (torch.einsum("nchw,ochw->no", x, w) ** 4).mean() + 0.1 * (w**2).sum()

    d = (torch.arange(w.numel(), dtype=torch.float64) + 1.0) / 10  # distinct entries: an order shows
    pre = {
        "numpy": d.numpy().copy(),
        "torch": d.clone(),
        "torch_callable": lambda: d.clone(),
    }[pre_kind]
    opt = ot.NewtonCG([w], lambda: ot.hessian_operator(fn, [w]), preconditioner=pre, max_cg_iter=3)
    return _two_steps(opt, fn, w)


@pytest.mark.parametrize("pre_kind", ["numpy", "torch", "torch_callable"])
def test_a_torch_preconditioner_is_read_in_logical_order_for_channels_last_params(pre_kind):
    want = _steps("numpy", channels_last=False)
    np.testing.assert_allclose(_steps(pre_kind, channels_last=False), want, rtol=0, atol=1e-13)
    np.testing.assert_allclose(_steps(pre_kind, channels_last=True), want, rtol=0, atol=1e-12)


def _quadratic_steps(kind: str, channels_last: bool) -> np.ndarray:
    """Two steps on 0.5 w.H w + sum(w) with the curvature ``H`` handed over as ``kind``."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 3, 2, 2, dtype=torch.float64, generator=g)
    if channels_last:
        w = w.contiguous(memory_format=torch.channels_last)
    w.requires_grad_()
    n = w.numel()
    m = torch.randn(n, n, dtype=torch.float64, generator=g)
    h = m @ m.T / n + torch.eye(n, dtype=torch.float64)

    def fn():
        return 0.5 * (w.reshape(-1) @ h @ w.reshape(-1)) + w.reshape(-1).sum()

    if kind == "scipy":
        from scipy.sparse.linalg import aslinearoperator

        curvature = aslinearoperator(h.numpy())
    else:
        curvature = {
            "hessian_operator": lambda: ot.hessian_operator(fn, [w]),
            "numpy_matrix": lambda: h.numpy(),
            "torch_matrix": lambda: h,
        }[kind]
    opt = ot.NewtonCG([w], curvature, max_cg_iter=5)
    return _two_steps(opt, fn, w)


@pytest.mark.parametrize("kind", ["numpy_matrix", "torch_matrix", "scipy"])
def test_a_dense_or_scipy_curvature_is_read_in_logical_order_for_channels_last_params(kind):
    """The curvature as a dense matrix (NumPy or torch, returned by the callable) or a SciPy
    LinearOperator is over the params flattened in logical order, as ``hessian_operator``'s:
    only operators with an ``xp`` were converted, the others multiplied memory-order vectors."""
    if kind == "scipy":
        pytest.importorskip("scipy")
    want = _quadratic_steps("hessian_operator", channels_last=False)
    np.testing.assert_allclose(_quadratic_steps(kind, channels_last=False), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(_quadratic_steps(kind, channels_last=True), want, rtol=0, atol=1e-12)
