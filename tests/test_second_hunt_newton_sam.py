"""NewtonCG's negative-curvature exit from a warm start, and SAM's ascent step with eps = 0 at a
zero gradient."""

import numpy as np
import pytest

from optkern import hessian, optim

# ---- NewtonCG: the negative-curvature direction of CG's first iteration -----------------------


def saddle(x):
    """f = (x0^2 - x1^2) / 2, its exact Hessian diag(1, -1) and the closure at ``x``."""
    H = np.diag([1.0, -1.0])
    return H, lambda: (float(0.5 * x @ H @ x), H @ x)


@pytest.mark.parametrize("precond", [None, np.array([2.0, 0.5])])
def test_negative_curvature_exit_from_a_warm_start_is_a_descent_direction(precond):
    """With a warm start x0, CG's first direction is M^-1 (-g - (B + lambda I) x0), not M^-1 (-g):
    when it has negative curvature (CG exits at once) it may point uphill. NewtonCG took it as it
    was (its comment: "still a descent direction"); along negative curvature -p lowers the model
    as well, and with g.p <= 0 it lowers it more: the step must be a descent direction."""
    x = np.array([1.0, -0.1])  # g = (1, 0.1)
    H, f = saddle(x)
    opt = optim.NewtonCG(
        [x], hessian.from_hvp(lambda v: H @ v, 2), damping=1e-3, warm_start=0.95, preconditioner=precond
    )
    sd = opt.state_dict()
    sd["state"][0]["prev_step"] = np.array([0.0, 50.0])  # a previous step along the negative curvature
    opt.load_state_dict(sd)
    w, (f0, g) = x.copy(), f()
    opt.step(f)
    assert opt.last["negative_curvature"] and opt.last["cg_iterations"] == 0
    assert opt.last["accepted"]
    step = x - w
    assert float(g @ step) < 0.0  # was +3.7: uphill to first order
    # the model with the undamped curvature, q(p) = g.p + p.Hp / 2, is lower than for -p
    q = lambda p: g @ p + 0.5 * p @ H @ p
    assert q(step) < q(-step)
    assert opt.last["new_loss"] < f0


def test_negative_curvature_exit_from_a_cold_start_is_unchanged():
    """Without a warm start the direction is M^-1 (-g), a descent direction already: not flipped."""
    x = np.array([0.0, 0.3])
    H, f = saddle(x)
    opt = optim.NewtonCG([x], hessian.from_hvp(lambda v: H @ v, 2), damping=1e-3, warm_start=0.0)
    opt.step(f)
    assert opt.last["negative_curvature"] and opt.last["cg_iterations"] == 0
    np.testing.assert_array_equal(x, [0.0, 0.6])  # w + p, p = -g = (0, 0.3)


# ---- SAM: eps = 0 and a zero gradient ---------------------------------------------------------


def sam_run(adaptive, w0, grads, eps=0.0, rho=0.05):
    """One SAM(SGD) step; returns the params the second closure call saw and the params after."""
    w = [a.copy() for a in w0]
    s = optim.SAM(optim.SGD(w, lr=0.1), rho=rho, eps=eps, adaptive=adaptive)
    seen = []

    def closure():
        seen.append([a.copy() for a in w])
        if any(not np.isfinite(a).all() for a in w):
            return float("nan"), [np.zeros_like(a) for a in w]
        return 1.0, [g.copy() for g in grads]

    s.step(closure)  # raised ValueError (the NaN loss at an all-NaN ascent point)
    return seen[1], w, s


def test_sam_eps_zero_zero_gradient_stays_at_w():
    """rho / (||g|| + eps) = rho / 0: the ascent point was NaN everywhere. A zero gradient has no
    ascent direction; as with eps > 0 the ascent point is w, bit for bit (-0.0 kept)."""
    w0 = [np.array([1.0, -0.0]), np.array([3.0])]
    grads = [np.zeros(2), np.zeros(1)]
    at, after, s = sam_run(False, w0, grads)
    for a, b in zip(at, w0):
        assert a.tobytes() == b.tobytes()
    assert s.grad_norm == 0.0 and not s._perturbed
    for a, b in zip(after, w0):
        assert a.tobytes() == b.tobytes()  # SGD with zero grads: w


def test_asam_eps_zero_zero_weights_stay_at_w():
    """ASAM's norm is ||w g||: zero where the moved weights are all 0 (a zero-initialized layer,
    e.g. a bias), and w^2 g = 0 there: the ascent point is w, not NaN."""
    w0 = [np.zeros(3)]
    at, after, _ = sam_run(True, w0, [np.array([1.0, -2.0, 0.5])], rho=0.5)
    np.testing.assert_array_equal(at[0], 0.0)
    np.testing.assert_array_equal(after[0], [-0.1, 0.2, -0.05])


def test_sam_eps_zero_nonzero_gradient_unchanged():
    """eps = 0 with a nonzero gradient: the ordinary ascent point w + rho g / ||g||."""
    w0 = [np.array([1.0, 2.0])]
    g = np.array([3.0, 4.0])
    at, _, s = sam_run(False, w0, [g])
    np.testing.assert_allclose(at[0], w0[0] + 0.05 * g / 5.0, rtol=0, atol=1e-15)
    assert s.grad_norm == 5.0
