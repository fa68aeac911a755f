"""A None gradient (a parameter the loss does not reach; torch's None ``.grad``) in the wrappers
and closure-based optimizers: SAM neither moves that parameter in its ascent step nor lets the
wrapped optimizer step it; L-BFGS and Newton-CG read it as zeros, as torch.optim.LBFGS does."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian, optim


def quad_grads(ws, a):
    """Gradients of sum_i a_i ||w_i||^2 / 2 + (w_0 . w_0)^2 / 4 (a non-quadratic first term)."""
    g = [ai * w for ai, w in zip(a, ws)]
    g[0] = g[0] + (ws[0] @ ws[0]) * ws[0]
    return g


@pytest.mark.parametrize("base", ["SGD", "Adam"])
def test_sam_skips_a_param_without_a_gradient(base):
    rng = np.random.default_rng(3)
    x0 = [rng.standard_normal(n) for n in (5, 3, 4)]
    xs, ys = [x.copy() for x in x0], [x0[0].copy(), x0[2].copy()]  # ys: the model without param 1
    hp = {"lr": 0.05} if base == "SGD" else {"lr": 0.01}
    sam_x = optim.SAM(getattr(optim, base)(xs, **hp), rho=0.1)
    sam_y = optim.SAM(getattr(optim, base)(ys, **hp), rho=0.1)
    a = [1.0, 2.0, 3.0]

    def closure_x():
        g = quad_grads(xs, a)
        return float(xs[0] @ xs[0]), [g[0], None, g[2]]

    def closure_y():
        g = quad_grads([ys[0], xs[1], ys[1]], a)
        return float(ys[0] @ ys[0]), [g[0], g[2]]

    for _ in range(4):
        sam_x.step(closure_x)
        sam_y.step(closure_y)
    np.testing.assert_array_equal(xs[1], x0[1])
    np.testing.assert_array_equal(xs[0], ys[0])
    np.testing.assert_array_equal(xs[2], ys[1])
    assert 1 not in sam_x.base.state_dict()["state"]
    # first_step / second_step by hand: param 1 never moves
    g = quad_grads(xs, a)
    sam_x.first_step([None, g[1], None])
    np.testing.assert_array_equal(xs[0], ys[0])
    assert not np.array_equal(xs[1], x0[1])
    sam_x.second_step([g[0], None, None])
    np.testing.assert_array_equal(xs[1], x0[1])  # (moved by the ascent step, then put back, not stepped)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_reads_a_none_gradient_as_zeros(line_search_fn):
    rng = np.random.default_rng(4)
    x0 = [rng.standard_normal(n) for n in (6, 2)]
    xs, zs = [x.copy() for x in x0], [x.copy() for x in x0]
    a = [1.0, 0.0]  # param 1 does not enter the loss
    opt_x = optim.LBFGS(xs, max_iter=5, line_search_fn=line_search_fn)
    opt_z = optim.LBFGS(zs, max_iter=5, line_search_fn=line_search_fn)
    for _ in range(3):
        lx = opt_x.step(lambda: (float(xs[0] @ xs[0]) ** 2, [quad_grads(xs, a)[0], None]))
        lz = opt_z.step(lambda: (float(zs[0] @ zs[0]) ** 2, [quad_grads(zs, a)[0], np.zeros(2)]))
        assert lx == lz
    for x, z in zip(xs, zs):
        np.testing.assert_array_equal(x, z)
    np.testing.assert_array_equal(xs[1], x0[1])


def test_newton_cg_reads_a_none_gradient_as_zeros():
    xs = [np.array([1.0, -2.0, 0.5]), np.array([3.0])]
    zs = [x.copy() for x in xs]
    d = np.array([2.0, 1.0, 4.0, 1.0])
    H = hessian.from_hvp(lambda v: d * v, 4)
    opt_x, opt_z = optim.NewtonCG(xs, H), optim.NewtonCG(zs, H)
    opt_x.step(lambda: (float(d[:3] @ xs[0] ** 2) / 2, [d[:3] * xs[0], None]))
    opt_z.step(lambda: (float(d[:3] @ zs[0] ** 2) / 2, [d[:3] * zs[0], np.zeros(1)]))
    for x, z in zip(xs, zs):
        np.testing.assert_array_equal(x, z)
    assert xs[1][0] == 3.0


@pytest.mark.parametrize(
    "make", [lambda ps: optim.LBFGS(ps), lambda ps: optim.NewtonCG(ps, hessian.from_hvp(lambda v: v, 5))]
)
def test_closure_grads_still_checked_around_nones(make):
    ps = [np.ones(3), np.ones(2)]
    opt = make(ps)
    with pytest.raises(TypeError, match=r"^closure: grads\[1\]: expected float64, got float32"):
        opt.step(lambda: (1.0, [None, np.ones(2, np.float32)]))
    with pytest.raises(ValueError, match=r"^closure: grads\[0\]: expected shape \(3,\), got \(2,\)"):
        opt.step(lambda: (1.0, [np.ones(2), None]))
    np.testing.assert_array_equal(ps[0], 1.0)
