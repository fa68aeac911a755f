"""Newton-CG's step took two full-vector ``xp.any`` passes that other passes already answer: cg's
``any(x0 / s)`` (is the warm start zero? ``_finite`` had its max |x0|) and NewtonCG's ``any(p)``
(is the step zero? ``p.p`` is summed for the model anyway; only a p.p of 0 -- an underflow -- is
looked at again). The b = 0 / x0 = 0 edge cases keep their results and product counts."""

import numpy as np
import pytest

from optkern import hessian, optim
from optkern.hessian import cg


def _spd(n, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n))
    return (q @ q.T / n + np.eye(n)).astype(dtype)


class _AnySpy:
    """np.any, counting its calls on arrays of at least ``n`` entries."""

    def __init__(self, n):
        self.n, self.calls, self.any = n, 0, np.any

    def __call__(self, a, *args, **kw):
        if np.size(a) >= self.n:
            self.calls += 1
        return self.any(a, *args, **kw)


def _quadratic(A, c, x):
    return lambda: (float(0.5 * x @ A @ x - c @ x), A @ x - c)


def test_a_warm_started_newton_cg_step_takes_no_full_vector_any(monkeypatch):
    n = 300
    A, c = _spd(n, 1), np.random.default_rng(1).standard_normal(n)
    x = np.zeros(n)
    opt = optim.NewtonCG([x], hessian.from_hvp(lambda v: A @ v, n), damping=1e-3, warm_start=0.95, max_cg_iter=5)
    f = _quadratic(A, c, x)
    opt.step(f)  # (the next steps start CG from 0.95 of this one)
    spy = _AnySpy(n)
    monkeypatch.setattr(np, "any", spy)
    for _ in range(3):
        opt.step(f)
    assert spy.calls == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("bscale", "x0", "more32", "more64"),  # the products beyond the cold solve's (None: b = 0, none)
    [
        (0.0, None, None, None),  # b = 0: x = 0 at once, no product
        (0.0, 1.0, None, None),  # b = 0 from a nonzero x0: the same
        (1.0, 0.0, 0, 0),  # x0 = 0: no product for r = b - A x0
        (1.0, -0.0, 0, 0),  # x0 = -0 is zero too
        (1.0, 1e-30, 1, 1),  # a small nonzero x0: the product
        (1e30, 1e-30, 0, 1),  # x0 / s (s ~2^99) underflows in float32, not in float64
        (1e30, 1e-44, 0, 1),
        (1e200, 1e-300, None, 0),  # x0 / s underflows in float64 (float32: b past its range, not run)
    ],
)
def test_cg_edge_cases_at_zero(dtype, bscale, x0, more32, more64):
    if dtype == np.float32 and bscale == 1e200:
        pytest.skip("b past float32's range")
    n = 40
    A = _spd(n, 3, dtype)
    b = (np.random.default_rng(3).standard_normal(n) * bscale).astype(dtype)
    cold = cg(A, b, rtol=1e-6)
    x0v = None if x0 is None else np.full(n, x0, dtype=dtype)
    x0v_copy = None if x0v is None else x0v.copy()
    res = cg(A, b, x0v, rtol=1e-6)
    if x0v is not None:
        np.testing.assert_array_equal(x0v, x0v_copy)  # (x0 not modified)
    if bscale == 0.0:
        assert res.num_matvecs == 0 and res.info == 0 and res.iterations == 0
        assert not np.any(res.x) and res.residual_norm == 0.0
        return
    more = more32 if dtype == np.float32 else more64
    assert res.num_matvecs == cold.num_matvecs + more
    if more == 0:  # a zero x0 (or one that scales to 0): the cold solve's very bits
        np.testing.assert_array_equal(res.x, cold.x)
        assert res.iterations == cold.iterations and res.residual_norm == cold.residual_norm
    else:
        np.testing.assert_allclose(res.x, cold.x, rtol=1e-4 if dtype == np.float32 else 1e-9)


def test_newton_cg_zero_gradient_is_a_null_step():
    n = 50
    A = _spd(n, 5)
    x = np.ones(n)
    opt = optim.NewtonCG([x], hessian.from_hvp(lambda v: A @ v, n), damping=1e-3)
    opt.step(lambda: (1.0, np.zeros(n)))
    np.testing.assert_array_equal(x, np.ones(n))
    assert not opt.last["accepted"] and np.isnan(opt.last["rho"]) and opt.num_hvps == 0
    opt.step(lambda: (1.0, np.zeros(n)))  # a warm start from p = 0: still nothing
    np.testing.assert_array_equal(x, np.ones(n))
    assert opt.num_hvps == 0


def test_newton_cg_step_whose_p_dot_p_underflows_is_not_a_null_step():
    """g ~1e-170: p ~1e-170 and p.p underflows to 0; p is not zero (the any pass decides there): the
    trial point w + p is evaluated (its loss, ~1e-340, does not resolve the step: it is undone)."""
    n = 20
    A = _spd(n, 6)
    c = np.random.default_rng(6).standard_normal(n) * 1e-170
    x = np.zeros(n)
    seen = []

    def f():
        seen.append(x.copy())
        return float(0.5 * x @ A @ x - c @ x), A @ x - c

    opt = optim.NewtonCG([x], hessian.from_hvp(lambda v: A @ v, n), damping=1e-3, max_cg_iter=n, cg_tol=1e-10)
    opt.step(f)
    assert len(seen) == 2 and np.any(seen[1]) and opt.num_grad_evals == 2
    assert not np.isnan(opt.last["rho"]) and opt.num_hvps > 0
