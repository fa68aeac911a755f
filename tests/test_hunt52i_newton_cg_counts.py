"""optim.NewtonCG's num_grad_evals / num_hvps are the closure calls and Hessian-vector products it
really made (issue 17: "the same number of gradient evaluations counted as (gradient + HVPs)").

The digits comparison with Adam spends its budget by these counters; halving the HVP count left
every Newton-CG test passing. Here the closure and the operator count their own calls, over
accepted and rejected steps, with and without reusing the trial gradient."""

import numpy as np
import pytest

from optkern import hessian, optim


@pytest.mark.parametrize("reuse", [False, True])
def test_counters_equal_the_calls_made(reuse):
    rng = np.random.default_rng(5201)
    n = 9
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    A = (Q * np.linspace(0.5, 4.0, n)) @ Q.T
    c = rng.standard_normal(n)
    x = rng.standard_normal(n) * 2.0
    calls = {"grad": 0, "hvp": 0}

    def closure():  # f = sum x^4 / 4 + x.A x / 2 - c.x: the quadratic model is poor far out
        calls["grad"] += 1
        return float(np.sum(x**4) / 4 + 0.5 * x @ A @ x - c @ x), x**3 + A @ x - c

    def hvp(v):
        calls["hvp"] += 1
        return 3 * x**2 * v + A @ v

    opt = optim.NewtonCG([x], hessian.from_hvp(hvp, n), damping=1e-3, max_cg_iter=4, reuse_trial_gradient=reuse)
    rejected = 0
    for _ in range(12):
        opt.step(closure)
        rejected += not opt.last["accepted"]
        assert (opt.num_grad_evals, opt.num_hvps) == (calls["grad"], calls["hvp"])
    assert calls["hvp"] > 12 and rejected >= 1  # several products per step; a rejected step counted too
