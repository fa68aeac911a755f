"""hessian.cg's setup takes b / s and x0 / s (fresh arrays) as its own r and x and scales x, r and
the direction back in place: none of that may reach the caller's b or x0, whatever the scale s
(1 when 1 <= max |b| < 2: then b itself must be copied), the start, the shape of b or the exit."""

import numpy as np
import pytest

from optkern import hessian

N = 12


def _spd(rng, dtype):
    q = rng.standard_normal((N, N))
    return (q @ q.T + N * np.eye(N)).astype(dtype)


def _indefinite(rng, dtype):
    q = rng.standard_normal((N, N))
    return ((q + q.T) / 2 - 3 * np.eye(N)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bmax", [1.5, 7.0, 1e-3])  # scale 1, 4, 2^-10
@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("column", [False, True])  # b of shape (n, 1): a view of it is the vector
@pytest.mark.parametrize("kind", ["spd", "indefinite", "maxiter0", "precond"])
def test_results_never_share_memory_with_b_or_x0(dtype, bmax, warm, column, kind):
    rng = np.random.default_rng(3)
    A = _indefinite(rng, dtype) if kind == "indefinite" else _spd(rng, dtype)
    b = rng.standard_normal(N).astype(dtype)
    b *= dtype(bmax) / np.abs(b).max()
    b = b.reshape(N, 1) if column else b
    x0 = (0.01 * bmax * rng.standard_normal(N)).astype(dtype) if warm else None  # (A x0 ~ b)
    b_before, x0_before = b.copy(), None if x0 is None else x0.copy()
    kw = {"maxiter": 0} if kind == "maxiter0" else {}
    if kind == "precond":
        kw["precond_diag"] = np.diag(A).copy()
    res = hessian.cg(A, b, x0, rtol=1e-6, **kw)
    if kind == "indefinite":
        assert res.negative_curvature
    np.testing.assert_array_equal(b, b_before)
    if x0 is not None:
        np.testing.assert_array_equal(x0, x0_before)
    outs = [a for a in (res.x, res.residual, res.direction) if a is not None]
    assert len(outs) == 3  # (maxiter 0 too: the first direction is made before the loop)
    for a in outs:
        for given in (b, x0):
            if given is not None:
                assert not np.shares_memory(a, given)
    for i, a in enumerate(outs):
        for c in outs[i + 1 :]:
            assert not np.shares_memory(a, c)
    # and the results are the float64 solve's (scaled back): r = b - A x from the recursion
    x64 = res.x.astype(np.float64)
    r64 = b_before.reshape(N).astype(np.float64) - A.astype(np.float64) @ x64
    tol = 1e-3 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(res.residual, r64, rtol=0, atol=tol * bmax)
    if kind == "spd":
        # ||A^-1 r|| <= ||r|| / lambda_min(A), lambda_min >= N: CG's rtol 1e-6 of ||b|| and float32 rounding
        x_ref = np.linalg.solve(A.astype(np.float64), b_before.reshape(N).astype(np.float64))
        np.testing.assert_allclose(x64, x_ref, rtol=0, atol=1e-5 * bmax)
