"""hessian.cg's ``damping`` past the range of the operator's dtype: the kernels add ``damping * p`` in
that dtype, where it was inf, and the solve raised "A: the product is not finite (p.Ap = inf)",
naming the operator for the caller's damping. Refused naming ``damping``, before any product."""

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP


def counting(A):
    calls = []

    def fn(v):
        calls.append(1)
        return A @ v

    return hessian.from_hvp(fn, A.shape[0], A.dtype), calls


@pytest.mark.parametrize("damping", [3.5e38, 1e39, 1e300])
def test_damping_past_float32_is_refused_naming_it(damping):
    A = np.diag(np.arange(1.0, 6.0)).astype(np.float32)
    op, calls = counting(A)
    with pytest.raises(ValueError, match="^damping: .* is not finite in float32"):
        hessian.cg(op, np.ones(5, np.float32), damping=damping)
    assert not calls  # (before any product)
    with pytest.raises(ValueError, match="^damping: .* is not finite in float32"):
        hessian.cg(A, np.ones(5, np.float32), damping=damping, precond_diag=np.ones(5, np.float32))


def test_damping_past_float32_on_the_gauss_newton_operator():
    """from_mlp's Gauss-Newton operator tells p.G p itself (cg's fused path): the same refusal."""
    model = MLP([3, 4, 2], dtype=np.float32)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 3)).astype(np.float32), rng.integers(0, 2, 6)
    G = hessian.from_mlp(model, model.init_params(0), x, y, kind="ggn")
    with pytest.raises(ValueError, match="^damping: .* is not finite in float32"):
        hessian.cg(G, np.ones(G.shape[0], np.float32), damping=1e39)


def test_damping_in_range_still_solves():
    """The largest damping float32 holds solves (A + d I) x = b; float64 takes 1e300."""
    A = np.diag(np.arange(1.0, 6.0)).astype(np.float32)
    d = float(np.finfo(np.float32).max) / 4
    r = hessian.cg(A, np.full(5, 1e30, np.float32), damping=d)
    assert r.info == 0
    np.testing.assert_allclose(r.x, 1e30 / (np.arange(1.0, 6.0) + d), rtol=1e-6)
    r = hessian.cg(A.astype(np.float64), np.ones(5), damping=1e300)
    assert r.info == 0
    np.testing.assert_allclose(r.x, 1e-300, rtol=1e-12)
