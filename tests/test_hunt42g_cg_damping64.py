"""hessian.cg with a float64 damping whose curvature term overflows: ``p.(A + damping I) p`` of 1e308
was inf and the solve raised "A: the product is not finite", naming the operator for the caller's
damping (a float64 damping is in range, so the up-front check of float32's cannot refuse it). Named
``damping`` where ``p.A p`` alone is finite, told on the error path only. A warm start whose residual
``b - (A + damping I) x0`` overflowed was refused naming the native kernel's own ``rz``."""

import sys

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP

A = np.diag(np.arange(1.0, 6.0))


@pytest.mark.parametrize("extra", [{}, {"precond_diag": np.ones(5)}, {"M": np.eye(5)}])
def test_a_float64_damping_overflowing_the_curvature_is_named(extra):
    with pytest.raises(ValueError, match=r"^damping: 1e\+308 makes the curvature p\.\(A \+ damping I\) p overflow"):
        hessian.cg(A, np.ones(5), damping=1e308, **extra)


def test_a_large_operator_with_a_large_damping_names_damping():
    """p.A p = 1.5e308 is finite; with damping 1e307 * p.p it is not: the damping tipped it over."""
    with pytest.raises(ValueError, match=r"^damping: .*\(p\.Ap = 1\.5e\+308, p\.p = 5\.0\)"):
        hessian.cg(A * 1e307, np.ones(5), damping=1e307)


def test_an_overflowing_operator_is_still_named():
    with np.errstate(over="ignore"):
        big = A * 1e308
    with pytest.raises(ValueError, match=r"^A: the product is not finite"):
        hessian.cg(big, np.ones(5))
    with pytest.raises(ValueError, match=r"^A: the product is not finite"):
        hessian.cg(big, np.ones(5), damping=1.0)


def test_the_gauss_newton_operator_names_damping_with_the_direction_it_had():
    """from_mlp's GGN tells p.G p with its product (the fused path): the same refusal, its p.p the
    one of the refused step (the kernel returns NaN for the p.p of a step it did not take)."""
    model = MLP([3, 4, 2], dtype=np.float64)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    G = hessian.from_mlp(model, model.init_params(0), x, y, kind="ggn")
    n = G.shape[0]
    with pytest.raises(ValueError, match=rf"^damping: 1e\+308 .*p\.p = {float(n)!r}\)"):
        hessian.cg(G, np.ones(n), damping=1e308)


def test_a_warm_start_overflowing_with_damping_is_named():
    with pytest.raises(ValueError, match=r"^damping: 1e\+300 \* x0 overflows float64"):
        hessian.cg(A, np.ones(5), damping=1e300, x0=np.full(5, 1e10))
    # x0 alone: its residual's sum of squares overflows, or A x0 does
    with pytest.raises(ValueError, match=r"^x0: the warm start's residual"):
        hessian.cg(np.eye(5), np.ones(5), x0=np.full(5, 1e200))
    with pytest.raises(ValueError, match=r"^x0: the product A x0 is not finite"):
        hessian.cg(A * 1e300, np.ones(5), x0=np.full(5, 1e10))


def test_no_pass_more_in_a_normal_solve(monkeypatch):
    """The diagnosis runs only on the error path: a solve in range never calls it."""
    mod = sys.modules["optkern.hessian.cg"]
    calls = []
    monkeypatch.setattr(mod, "_curvature_overflow", lambda *a, **k: calls.append(1))
    r = hessian.cg(A, np.ones(5), damping=1e300, rtol=1e-12)
    assert r.info == 0 and not calls
    np.testing.assert_allclose(r.x, 1.0 / (np.arange(1.0, 6.0) + 1e300), rtol=1e-12)
