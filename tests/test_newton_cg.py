"""hessian.cg (against dense solves and SciPy) and optim.NewtonCG (quadratics, indefinite Hessians,
the digits MLP against Adam at an equal count of gradient + Hessian-vector products)."""

import math

import numpy as np
import pytest

from optkern import hessian, nn, optim
from optkern.datasets import load_digits


def spd(n, seed, lo=1.0, hi=10.0):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    return (Q * rng.uniform(lo, hi, n)) @ Q.T


# ---- cg -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 40])
def test_cg_solves_spd_in_at_most_n_iterations(n):
    A = spd(n, n)
    b = np.random.default_rng(1).standard_normal(n)
    res = hessian.cg(A, b, rtol=1e-10, maxiter=n)
    assert res.info == 0 and res.iterations <= n
    assert np.linalg.norm(A @ res.x - b) <= 1e-10 * np.linalg.norm(b) * 1.01
    np.testing.assert_allclose(res.x, np.linalg.solve(A, b), rtol=1e-8, atol=1e-10)
    x, info = res  # SciPy's (x, info) unpacking
    assert info == 0 and x is res.x


def test_cg_agrees_with_scipy_and_its_info_codes():
    sla = pytest.importorskip("scipy.sparse.linalg")
    A = spd(30, 2, 0.01, 10.0)
    b = np.random.default_rng(2).standard_normal(30)
    x, info = hessian.cg(A, b, rtol=1e-8)
    xs, infos = sla.cg(A, b, rtol=1e-8)
    assert info == infos == 0
    np.testing.assert_allclose(x, xs, rtol=1e-6)
    res = hessian.cg(A, b, rtol=1e-14, maxiter=3)  # not converged: info = iterations run
    assert res.info == 3 and res.iterations == 3


def test_cg_damping_preconditioner_warm_start():
    n = 25
    A = spd(n, 3) * np.logspace(0, 3, n)[:, None] ** 0.5 * np.logspace(0, 3, n)[None, :] ** 0.5  # badly scaled
    b = np.random.default_rng(3).standard_normal(n)
    lam = 0.3
    want = np.linalg.solve(A + lam * np.eye(n), b)
    plain = hessian.cg(A, b, rtol=1e-10, damping=lam, maxiter=500)
    jac = hessian.cg(A, b, rtol=1e-10, damping=lam, precond_diag=np.diag(A) + lam, maxiter=500)
    for r in (plain, jac):
        np.testing.assert_allclose(r.x, want, rtol=1e-7, atol=1e-9)
    assert jac.iterations < plain.iterations
    x0 = want.copy()
    warm = hessian.cg(A, b, x0, rtol=1e-6, damping=lam)
    assert warm.iterations == 0 and warm.num_matvecs == 1
    np.testing.assert_array_equal(x0, want)  # x0 is not written
    op = hessian.from_hvp(lambda v: A @ v, n)
    callback_calls = []
    via_op = hessian.cg(
        op,
        b,
        rtol=1e-10,
        damping=lam,
        M=np.diag(1.0 / (np.diag(A) + lam)),
        callback=lambda xk: callback_calls.append(1),
    )
    np.testing.assert_allclose(via_op.x, want, rtol=1e-7, atol=1e-9)
    assert len(callback_calls) == via_op.iterations == op.num_matvecs


def test_cg_exits_on_negative_curvature():
    rng = np.random.default_rng(4)
    Q = np.linalg.qr(rng.standard_normal((10, 10)))[0]
    A = (Q * np.r_[-2.0, -0.5, np.linspace(1, 5, 8)]) @ Q.T
    b = rng.standard_normal(10)
    res = hessian.cg(A, b, rtol=1e-12)
    assert res.info == -1 and res.negative_curvature
    d = res.direction
    assert d @ A @ d <= 0
    # the iterate so far still decreases the quadratic model (0 is where it started)
    x = res.x
    assert 0.5 * x @ A @ x - b @ x <= 0.0


def test_cg_on_the_mlp_ggn():
    d = load_digits(np.float64)
    model = nn.MLP([64, 8, 10], dtype=np.float64)
    p = model.init_params(seed=0)
    G = hessian.from_mlp(model, p, d.x[:128], d.y[:128], kind="ggn")
    b = np.random.default_rng(5).standard_normal(model.num_params)
    res = hessian.cg(G, b, damping=1e-2, rtol=1e-9, maxiter=2000)
    assert res.info == 0
    np.testing.assert_allclose(G.matvec(res.x) + 1e-2 * res.x, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "kw,exc,match",
    [
        ({"precond_diag": np.r_[1.0, 0.0, 1.0]}, ValueError, "precond_diag: must be positive"),
        ({"precond_diag": np.r_[1.0, np.nan, 1.0]}, ValueError, "precond_diag"),
        ({"precond_diag": np.ones(2)}, ValueError, "precond_diag: expected shape"),
        ({"M": -np.eye(3)}, ValueError, "M: the preconditioner is not positive definite"),
        ({"M": np.eye(3), "precond_diag": np.ones(3)}, ValueError, "at most one"),
        ({"damping": -1.0}, ValueError, "damping"),
        ({"rtol": float("nan")}, ValueError, "rtol"),
        ({"maxiter": -1}, ValueError, "maxiter"),
        ({"x0": np.ones(4)}, ValueError, "x0"),
        ({"callback": 3}, TypeError, "callback"),
    ],
)
def test_cg_bad_input(kw, exc, match):
    with pytest.raises(exc, match=match):
        hessian.cg(spd(3, 0), np.ones(3), **kw)


def test_cg_bad_b():
    with pytest.raises(ValueError, match="b: expected shape"):
        hessian.cg(spd(3, 0), np.ones(4))
    with pytest.raises(ValueError, match="b: has NaN"):
        hessian.cg(spd(3, 0), np.r_[1.0, np.nan, 0.0])


def test_cg_operator_output_checked_and_never_written():
    """A product of the wrong size is named; an operator that hands back its input (or an array it
    keeps) is read, never written, by the fused passes."""
    with pytest.raises(ValueError, match=r"^fn: returned shape \(5,\), expected \(3,\)"):
        hessian.cg(hessian.from_hvp(lambda v: np.ones(5), 3), np.ones(3))
    kept = np.array([2.0, 4.0, 8.0])
    res = hessian.cg(hessian.from_hvp(lambda v: kept * v, 3), np.ones(3), damping=0.5, rtol=1e-14)
    np.testing.assert_allclose(res.x, 1.0 / (kept + 0.5), rtol=1e-12)
    np.testing.assert_array_equal(kept, [2.0, 4.0, 8.0])
    res = hessian.cg(hessian.from_hvp(lambda v: v, 3), np.r_[1.0, 2.0, 3.0])  # y is p itself
    np.testing.assert_allclose(res.x, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="A: the product gave a non-finite step"):  # p.Ap = 0, not stopped
        hessian.cg(hessian.from_hvp(lambda v: 0.0 * v, 3), np.ones(3), stop_on_negative_curvature=False)


@pytest.mark.parametrize("precond", [False, True])
@pytest.mark.parametrize("start", ["cold", "warm"])
def test_cg_zero_rhs_is_solved_by_zero_at_once(start, precond):
    """b = 0: x = 0, info 0, no product, whatever x0 (SciPy's answer). From a nonzero x0 the rule
    ||r|| <= max(rtol ||b||, atol) = 0 could not be met: CG ran all maxiter products and reported
    no convergence. The result's other fields describe x = 0: the residual is b."""
    sla = pytest.importorskip("scipy.sparse.linalg")
    n, lam = 12, 0.5
    A = spd(n, 11)
    x0 = np.random.default_rng(11).standard_normal(n) if start == "warm" else None
    products = []
    op = hessian.from_hvp(lambda v: products.append(1) or A @ v, n)
    kw = {"precond_diag": np.diag(A) + lam} if precond else {}
    b = np.zeros(n)
    res = hessian.cg(op, b, x0, damping=lam, **kw)
    assert (res.info, res.iterations, res.num_matvecs, len(products)) == (0, 0, 0, 0)
    assert res.x.shape == (n,) and res.x.dtype == np.float64 and not res.x.any()
    assert res.residual_norm == 0.0 and res.residual.shape == (n,) and not res.residual.any()
    assert not res.negative_curvature and res.direction is None
    xs, info = sla.cg(A + lam * np.eye(n), b, x0=x0)
    assert info == 0
    np.testing.assert_array_equal(res.x, xs)
    if x0 is not None:
        assert x0.any()  # (the warm start is not written)


# ---- NewtonCG ---------------------------------------------------------------------------------


def quadratic(A, c):
    return lambda x: (0.5 * x @ A @ x - c @ x, A @ x - c)


def test_newton_cg_solves_a_quadratic_in_one_step():
    n = 20
    A, c = spd(n, 7), np.random.default_rng(7).standard_normal(n)
    x = np.zeros(n)
    f = quadratic(A, c)
    opt = optim.NewtonCG(
        [x], hessian.from_hvp(lambda v: A @ v, n), damping=1e-10, min_damping=1e-14, max_cg_iter=n, cg_tol=1e-13
    )
    opt.step(lambda: f(x))
    np.testing.assert_allclose(x, np.linalg.solve(A, c), rtol=1e-9, atol=1e-11)
    assert opt.last["accepted"] and abs(opt.last["rho"] - 1.0) < 1e-6
    assert opt.param_groups[0]["damping"] < 1e-10  # an exact model lowers the damping (rho > 3/4)


def test_newton_cg_levenberg_marquardt_raises_damping_on_a_bad_model():
    # f = sum x^4 / 4: at x = 1 the quadratic model overshoots toward 0 less than the quartic...
    # use a wrong curvature (10x too small): the step overshoots, rho < 1/4, damping goes up
    x = np.array([1.0, -2.0])
    f = lambda: (float(np.sum(x**2)), 2 * x)
    opt = optim.NewtonCG([x], hessian.from_hvp(lambda v: 0.2 * v, 2), damping=1e-3, warm_start=0.0)
    opt.step(f)
    assert opt.last["rho"] < 0.25 and opt.param_groups[0]["damping"] == pytest.approx(1.5e-3)
    assert not opt.last["accepted"]
    np.testing.assert_array_equal(x, [1.0, -2.0])  # a step that raised the loss is undone


@pytest.mark.parametrize("reuse", [False, True])
def test_newton_cg_after_a_rejected_step_evaluates_the_start_unless_reusing(reuse):
    """A rejected step leaves the params at w; the next step starts from the closure's new result
    at w when evaluations do not carry over (a new batch each step), from the cached one when they
    do -- and either way it returns that start loss."""
    x = np.array([1.0, -2.0])
    shift = [0.0]  # the "batch": f_b(x) = |x - b|^2
    calls = []

    def f():
        calls.append(x.copy())
        d = x - shift[0]
        return float(d @ d), 2 * d

    opt = optim.NewtonCG(
        [x], hessian.from_hvp(lambda v: 0.2 * v, 2), damping=1e-3, warm_start=0.0, reuse_trial_gradient=reuse
    )
    opt.step(f)
    assert not opt.last["accepted"] and len(calls) == 2
    shift[0] = 0.5  # the next batch
    start = opt.step(f)
    assert len(calls) == (3 if reuse else 4)
    if not reuse:
        np.testing.assert_array_equal(calls[2], [1.0, -2.0])  # the step's first call is at w
    assert start == (5.0 if reuse else 0.25 + 6.25)  # the cached loss at w, or the new batch's
    assert opt.num_grad_evals == len(calls)


def test_newton_cg_zero_gradient_is_a_null_step():
    """A zero gradient makes p = 0 (CG's x for b = 0): the step evaluates only at w, runs no
    product (from the warm start CG used to spend all max_cg_iter of them), leaves the params and
    the damping as they are (rho = 0/0 was read as -inf and boosted the damping) and skips the
    trial evaluation at w + 0 = w; ``last`` says so (rho NaN, not accepted)."""
    A = np.diag([1.0, 2.0, 3.0])
    x = np.zeros(3)
    batch = {"b": np.array([1.0, -1.0, 2.0])}  # f_b(x) = (x - b).A(x - b) / 2
    calls, products = [], []

    def f():
        calls.append(x.copy())
        d = x - batch["b"]
        return float(0.5 * d @ A @ d), A @ d

    H = hessian.from_hvp(lambda v: products.append(1) or A @ v, 3)
    opt = optim.NewtonCG([x], H, damping=1e-3, warm_start=0.95, max_cg_iter=40, reuse_trial_gradient=False)
    opt.step(f)
    assert opt.last["accepted"] and opt._p.any()  # a warm start for the next step
    batch["b"] = x.copy()  # a batch whose minimum is w: its gradient there is exactly 0
    w, lam = x.copy(), opt.param_groups[0]["damping"]
    for _ in range(2):
        n_calls, n_products, evals, hvps = len(calls), len(products), opt.num_grad_evals, opt.num_hvps
        assert opt.step(f) == 0.0
        assert len(calls) == n_calls + 1 and len(products) == n_products
        assert (opt.num_grad_evals, opt.num_hvps) == (evals + 1, hvps)
        assert opt.param_groups[0]["damping"] == lam and opt.last["damping"] == lam
        assert math.isnan(opt.last["rho"]) and not opt.last["accepted"]
        assert (opt.last["cg_iterations"], opt.last["cg_info"], opt.last["new_loss"]) == (0, 0, 0.0)
        np.testing.assert_array_equal(x, w)
    # reusing evaluations: a start at the minimum costs one closure call over two steps
    z = np.array([1.0, -1.0, 2.0])
    calls.clear()
    products.clear()
    opt = optim.NewtonCG([z], H, damping=1e-3)
    batch["b"] = z.copy()
    x = z  # (f reads x)
    for _ in range(2):
        assert opt.step(f) == 0.0
    assert len(calls) == 1 and not products and opt.param_groups[0]["damping"] == 1e-3
    np.testing.assert_array_equal(z, [1.0, -1.0, 2.0])


def test_newton_cg_handles_an_indefinite_hessian():
    # f = x0^2 - x1^2 + x1^4 from near the saddle: the exact Hessian has negative curvature there
    def fg(z):
        return z[0] ** 2 - z[1] ** 2 + z[1] ** 4, np.array([2 * z[0], -2 * z[1] + 4 * z[1] ** 3])

    x = np.array([0.5, 0.05])
    H = hessian.from_hvp(lambda v: np.array([2 * v[0], (-2 + 12 * x[1] ** 2) * v[1]]), 2)
    opt = optim.NewtonCG([x], H, damping=1e-3, max_cg_iter=5)
    f0 = fg(x)[0]
    seen_negative = False
    for _ in range(30):
        opt.step(lambda: fg(x))
        seen_negative |= opt.last["negative_curvature"]
    assert seen_negative
    assert fg(x)[0] < f0 - 0.2  # escaped the saddle towards a minimum (f* = -0.25)


def test_newton_cg_beats_adam_on_digits_at_equal_products():
    d = load_digits(np.float64)
    x, y = d.x[:256], d.y[:256]
    model = nn.MLP([64, 16, 10], activation="tanh", dtype=np.float64)
    budget = 200  # gradient evaluations + Hessian(GGN)-vector products
    p = model.init_params(seed=0)
    G = hessian.from_mlp(model, p, x, y, kind="ggn")
    opt = optim.NewtonCG([p], G, damping=0.1, max_cg_iter=10)
    while opt.num_grad_evals + opt.num_hvps + 10 + 1 <= budget:
        opt.step(lambda: model.loss_and_grad(p, x, y))
    ncg = model.loss(p, x, y)
    best_adam = np.inf
    for lr in (1e-2, 3e-2, 1e-1):  # Adam's best learning rate of three
        q = model.init_params(seed=0)
        adam = optim.Adam([q], lr=lr)
        for _ in range(budget):
            adam.step([model.loss_and_grad(q, x, y)[1]])
        best_adam = min(best_adam, model.loss(q, x, y))
    assert opt.num_grad_evals + opt.num_hvps <= budget
    assert ncg < best_adam


def test_newton_cg_preconditioner_and_state_dict():
    n = 12
    A, c = spd(n, 9, 0.1, 100.0), np.random.default_rng(9).standard_normal(n)
    f = quadratic(A, c)
    x = np.zeros(n)
    opt = optim.NewtonCG(
        [x], hessian.from_hvp(lambda v: A @ v, n), preconditioner=lambda: np.diag(A).copy(), max_cg_iter=4
    )
    for _ in range(3):
        opt.step(lambda: f(x))
    sd = opt.state_dict()
    x2 = x.copy()
    opt2 = optim.NewtonCG(
        [x2], hessian.from_hvp(lambda v: A @ v, n), preconditioner=lambda: np.diag(A).copy(), max_cg_iter=4, damping=7.0
    )
    opt2.load_state_dict(sd)
    opt._cache = None  # both start the next step from a fresh evaluation
    for _ in range(3):
        opt.step(lambda: f(x))
        opt2.step(lambda: f(x2))
    np.testing.assert_array_equal(x, x2)


@pytest.mark.parametrize(
    "kw,exc,match",
    [
        ({"damping": 0.0}, ValueError, "damping"),
        ({"lr": -1.0}, ValueError, "lr"),
        ({"max_cg_iter": 0}, ValueError, "max_cg_iter"),
        ({"cg_tol": 2.0}, ValueError, "cg_tol"),
        ({"warm_start": 1.5}, ValueError, "warm_start"),
        ({"curvature": 3}, TypeError, "curvature"),
        ({"preconditioner": "diag"}, TypeError, "preconditioner"),
    ],
)
def test_newton_cg_bad_hyper_parameters(kw, exc, match):
    args = {"curvature": hessian.from_hvp(lambda v: v, 3)}
    args.update(kw)
    with pytest.raises(exc, match=match):
        optim.NewtonCG([np.zeros(3)], **args)


def test_newton_cg_bad_closure_and_preconditioner_write_nothing():
    x = np.array([1.0, 2.0, 3.0])
    H = hessian.from_hvp(lambda v: v, 3)
    for pc, match in (
        (np.r_[1.0, -1.0, 1.0], "preconditioner: the diagonal"),
        (np.ones(2), "preconditioner: expected"),
    ):
        with pytest.raises(ValueError, match=match):
            optim.NewtonCG([x], H, preconditioner=pc).step(lambda: (float(x @ x), 2 * x))
    with pytest.raises(ValueError, match="closure: returned a non-finite"):
        optim.NewtonCG([x], H).step(lambda: (float("nan"), 2 * x))
    with pytest.raises(ValueError, match=r"closure: grads\[0\]"):
        optim.NewtonCG([x], H).step(lambda: (1.0, np.ones(2)))
    calls = [0]

    def inf_at_trial():
        calls[0] += 1
        return (float(x @ x) if calls[0] == 1 else float("inf")), 2 * x

    # not bad input: a rejected step (the params back, the damping boosted; test_hunt55j_newton_cg_recovery)
    opt = optim.NewtonCG([x], H)
    opt.step(inf_at_trial)
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    assert not opt.last["accepted"] and opt.param_groups[0]["damping"] == 1.5
    with pytest.raises(ValueError, match="curvature: expected an operator of shape"):
        optim.NewtonCG([x], hessian.from_hvp(lambda v: v, 4)).step(lambda: (float(x @ x), 2 * x))
