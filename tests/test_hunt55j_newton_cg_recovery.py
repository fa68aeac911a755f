"""Hunt 55j: Newton-CG's Levenberg-Marquardt loop must recover from what it can recover from.

- A trial point whose loss is not finite (a function defined only within a radius, an overflow) is
  a rejected step (Martens 2010, Levenberg-Marquardt): the params go back, the damping is boosted
  as for a poor reduction ratio. It raised ValueError with the damping unchanged, so every retry
  tried the same point and raised again. A NaN loss or gradient at the CURRENT point is still bad
  input: refused naming ``closure``, nothing written.
- ``max_damping`` beyond the params' dtype (1e300 with float32 params): the boosts took the damping
  past float32's range and every step then raised; refused at construction (and when set or
  loaded), naming ``max_damping``.
- params of total size 0: every step raised "curvature: expected a square matrix of at least 1 x 1";
  a step over nothing now returns the loss and writes nothing, as LBFGS and the first-order
  optimizers do.
"""

import math

import numpy as np
import pytest
import torch

import optkern.torch as ot
from optkern import hessian, optim

RADIUS = 2.0


def _walled(x, calls=None):
    """f(x) = 1/2 |x - c|^2 + 1/4 sum x^4 inside |x| < RADIUS, +inf (and a NaN gradient) outside:
    its minimiser lies inside; a step from a point near the wall on the curvature below, 0.05 I (a
    model far too flat), lands outside until the damping has grown."""
    c = (np.linspace(0.3, 0.9, x.size) / np.sqrt(x.size)).astype(x.dtype)  # (|c| < 1: inside)

    def closure():
        if calls is not None:
            calls.append(x.copy())
        if float(np.linalg.norm(x.astype(np.float64))) >= RADIUS:
            return math.inf, np.full_like(x, np.nan)
        return float(0.5 * ((x - c) ** 2).sum() + 0.25 * (x**4).sum()), (x - c) + x**3

    return closure, hessian.from_hvp(lambda v: v * 0.05, x.size, x.dtype)


def _minimum(n):
    """The walled function's minimiser (separable: x + x^3 = c), by Newton in float64."""
    c = np.linspace(0.3, 0.9, n) / np.sqrt(n)
    z = c.copy()
    for _ in range(60):
        z -= (z + z**3 - c) / (1 + 3 * z**2)
    return z


@pytest.mark.parametrize("n", [1, 7, 1023])
def test_an_infinite_trial_loss_is_a_rejected_step_and_newton_cg_converges(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n)
    x *= 1.9 / np.linalg.norm(x)  # near the wall
    closure, op = _walled(x)
    opt = optim.NewtonCG([x], op, damping=1e-3, warm_start=0.0)
    rejected_inf = 0
    for _ in range(200):
        before, lam = x.copy(), opt.param_groups[0]["damping"]
        loss = opt.step(closure)
        assert math.isfinite(loss)
        if math.isinf(opt.last["new_loss"]):
            rejected_inf += 1
            assert opt.last["accepted"] is False and opt.last["rho"] == -math.inf
            np.testing.assert_array_equal(x, before)  # the params back where the step started
            assert opt.param_groups[0]["damping"] == min(lam * 1.5, 1e8)  # boosted, as rho < 1/4
    assert rejected_inf >= 1  # the case under test happened
    np.testing.assert_allclose(x, _minimum(n), rtol=1e-7, atol=1e-9)


def test_a_nan_trial_loss_is_rejected_too_and_its_gradient_not_read():
    x = np.array([1.5, -1.0, 0.25])
    n = [0]

    def closure():
        n[0] += 1
        if n[0] == 2:
            return float("nan"), np.full(3, np.nan)  # the trial point
        return float((x**2).sum()), 2 * x

    opt = optim.NewtonCG([x], hessian.from_hvp(lambda v: 2 * v, 3))
    assert opt.step(closure) == pytest.approx(1.5**2 + 1 + 0.0625)
    np.testing.assert_array_equal(x, [1.5, -1.0, 0.25])
    assert opt.last["accepted"] is False and opt.last["rho"] == -math.inf and math.isnan(opt.last["new_loss"])
    assert opt.param_groups[0]["damping"] == 1.5 and opt.num_grad_evals == 2
    opt.step(closure)  # the start's evaluation reused; the trial now finite: accepted
    assert opt.last["accepted"]
    np.testing.assert_allclose(x, np.array([1.5, -1.0, 0.25]) * (1 - 2 / 3.5), rtol=1e-12)  # (B + 1.5 I) p = -g


def test_torch_newton_cg_recovers_from_an_infinite_trial_loss():
    w = torch.tensor([1.9, 0.1], dtype=torch.float64, requires_grad=True)

    def closure():
        w.grad = None
        if float(w.detach().norm()) >= RADIUS:
            loss = w.sum() * math.inf
        else:
            loss = 0.5 * ((w - 0.5) ** 2).sum() + 0.25 * (w**4).sum()
        loss.backward()
        return loss

    opt = ot.NewtonCG([w], hessian.from_hvp(lambda v: v * 0.05, 2), damping=1e-3, warm_start=0.0)
    seen_inf = False
    for _ in range(100):
        opt.step(closure)
        seen_inf |= math.isinf(opt.last["new_loss"])
    assert seen_inf
    np.testing.assert_allclose(w.detach().numpy(), [_scalar_min(0.5)] * 2, rtol=1e-7)


def _scalar_min(c):
    z = c
    for _ in range(60):
        z -= (z + z**3 - c) / (1 + 3 * z**2)
    return z


@pytest.mark.parametrize("bad", ["nan-loss", "inf-loss", "nan-grad"])
def test_a_non_finite_current_point_still_raises_and_writes_nothing(bad):
    x = np.array([0.5, -0.25, 1.0])
    opt = optim.NewtonCG([x], hessian.from_hvp(lambda v: v, 3), reuse_trial_gradient=False)
    opt.step(lambda: (float((x**2).sum()), 2 * x))
    before, sd = x.copy(), opt.state_dict()

    def closure():
        if bad == "nan-grad":
            return 1.0, np.r_[np.nan, 0.0, 0.0]
        return (float("nan") if bad == "nan-loss" else math.inf), 2 * x

    with pytest.raises(ValueError, match="^closure: "):
        opt.step(closure)
    np.testing.assert_array_equal(x, before)
    assert opt.param_groups[0]["damping"] == sd["param_groups"][0]["damping"]
    assert opt.num_grad_evals == sd["state"][0]["num_grad_evals"]


def test_a_nan_gradient_with_a_finite_trial_loss_still_raises_and_writes_nothing():
    x = np.array([0.5, -0.25, 1.0])
    n = [0]

    def closure():
        n[0] += 1
        return float((x**2).sum()), (2 * x if n[0] == 1 else np.full(3, np.nan))

    opt = optim.NewtonCG([x], hessian.from_hvp(lambda v: 2 * v, 3))
    with pytest.raises(ValueError, match="^closure: returned a gradient with NaN"):
        opt.step(closure)
    np.testing.assert_array_equal(x, [0.5, -0.25, 1.0])
    assert opt.param_groups[0]["damping"] == 1.0 and opt.num_grad_evals == 0


# ---- max_damping and the params' dtype -------------------------------------------------------------


def _always_rejected(x):
    """A loss of 1 + |x - x0|^2 with a gradient (-1, ..., -1) at x0 (a wrong one): every trial point
    raises the loss, every step is rejected and boosts the damping."""
    x0 = x.copy()
    return lambda: (1.0 + float(((x - x0) ** 2).sum()), np.full_like(x, -1.0))


def test_max_damping_beyond_float32_is_refused_naming_it():
    x = np.ones(3, np.float32)
    op = hessian.from_hvp(lambda v: v, 3, np.float32)
    with pytest.raises(ValueError, match=r"^max_damping: 1e\+300 is not finite in float32"):
        optim.NewtonCG([x], op, max_damping=1e300)
    with pytest.raises(ValueError, match=r"^max_damping: 1e\+300 is not finite in float32"):
        ot.NewtonCG([torch.ones(3)], op, max_damping=1e300)
    w = torch.ones(3, requires_grad=True)
    topt = ot.NewtonCG([w], op)
    topt.param_groups[0]["max_damping"] = 1e39
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['max_damping'\]: 1e\+39 is not finite in float32"):
        topt.step(lambda: pytest.fail("closure called"))
    opt = optim.NewtonCG([x], op)
    opt.param_groups[0]["max_damping"] = 1e39  # set between steps: refused before the closure runs
    with pytest.raises(ValueError, match=r"^max_damping: 1e\+39 is not finite in float32"):
        opt.step(lambda: pytest.fail("closure called"))
    sd = opt.state_dict()
    sd["param_groups"][0]["max_damping"] = 1e300
    with pytest.raises(ValueError, match=r"^state_dict\['param_groups'\]\[0\]\['max_damping'\]: 1e\+300 is not finite"):
        optim.NewtonCG([np.ones(3, np.float32)], op).load_state_dict(sd)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_repeated_rejections_stop_at_max_damping_and_never_raise(dtype):
    """The largest max_damping each dtype takes: a boost past it is clamped to it, every step still
    runs (rejected) and the damping stays finite in the dtype."""
    top = float(np.finfo(dtype).max)
    x = np.array([1.0, -2.0, 0.5], dtype)
    op = hessian.from_hvp(lambda v: v, 3, dtype)
    opt = optim.NewtonCG([x], op, damping=top / 1e3, max_damping=top)
    closure = _always_rejected(x)
    for _ in range(30):
        opt.step(closure)
        assert opt.last["accepted"] is False
    assert opt.param_groups[0]["damping"] == top
    np.testing.assert_array_equal(x, np.array([1.0, -2.0, 0.5], dtype))
    if dtype == np.float64:  # 1e300 is within float64's range: taken
        optim.NewtonCG([x], op, max_damping=1e300)


# ---- params of total size 0 ----------------------------------------------------------------------


def test_a_step_over_no_elements_returns_the_loss_and_writes_nothing():
    """As LBFGS (and the first-order optimizers) step over nothing: the closure is evaluated and
    checked, its loss returned; no curvature product (an operator is n x n with n >= 1: a callable
    curvature is not called)."""
    p = np.zeros((0, 3))
    built = []
    opt = optim.NewtonCG([p], lambda: built.append(1))
    assert opt.step(lambda: (2.5, [np.zeros((0, 3))])) == 2.5
    assert opt.step(lambda: (2.5, [np.zeros((0, 3))])) == 2.5
    assert built == [] and opt.num_grad_evals == 1 and opt.num_hvps == 0  # (the start reused)
    assert opt.last["accepted"] is False and math.isnan(opt.last["rho"]) and opt.param_groups[0]["damping"] == 1.0
    with pytest.raises(ValueError, match=r"^closure: grads\[0\]"):
        optim.NewtonCG([p], lambda: None).step(lambda: (1.0, [np.zeros(3)]))
    with pytest.raises(ValueError, match="^closure: returned a non-finite loss"):
        optim.NewtonCG([p], lambda: None).step(lambda: (math.inf, [np.zeros((0, 3))]))
    sd = opt.state_dict()
    optim.NewtonCG([np.zeros((0, 3))], lambda: None).load_state_dict(sd)


def test_torch_newton_cg_over_no_elements():
    w = torch.zeros(0, dtype=torch.float64, requires_grad=True)

    def closure():
        w.grad = None
        loss = (w**2).sum() + 1.0
        loss.backward()
        return loss

    opt = ot.NewtonCG([w], lambda: None)
    assert float(opt.step(closure).detach()) == 1.0
    assert w.numel() == 0
