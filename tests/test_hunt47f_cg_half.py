"""hessian.cg on a float16 matrix: solved as SciPy's cg solves it, in float64 (its make_system reads a
matrix of a type other than float32 / float64 / complex as float64). It was refused, "A: expected a
float32 or float64 matrix, got float16"."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from optkern import hessian


def _system(n: int = 7):
    rng = np.random.default_rng(47)
    q = rng.standard_normal((n, n))
    A = (q @ q.T / n + 2.0 * np.eye(n)).astype(np.float16)
    A = np.triu(A) + np.triu(A, 1).T  # (symmetric after the rounding too)
    return A, rng.standard_normal(n).astype(np.float16)


@pytest.mark.parametrize("b_dtype", [np.float16, np.float32, np.float64])
def test_float16_matrix_solved_in_float64_as_scipy(b_dtype):
    A, b = _system()
    b = b.astype(b_dtype)
    res = hessian.cg(A, b, rtol=1e-10)
    ref, info = spla.cg(A, b, rtol=1e-10)
    assert info == 0 and res.info == 0
    assert res.x.dtype == ref.dtype == np.float64
    np.testing.assert_allclose(res.x, ref, rtol=1e-8, atol=1e-10)
    # the same solve as on the float64 copy of the matrix: bit for bit
    same = hessian.cg(A.astype(np.float64), b, rtol=1e-10)
    assert np.array_equal(res.x, same.x)
    assert res.iterations == same.iterations


def test_float16_matrix_not_modified_and_torch_half_too():
    import torch

    A, b = _system(5)
    before = A.copy()
    x64 = hessian.cg(A.astype(np.float64), b, rtol=1e-10).x
    assert np.array_equal(hessian.cg(torch.from_numpy(A), b, rtol=1e-10).x, x64)
    assert np.array_equal(A, before)


def test_float16_asymmetric_still_refused_naming_A():
    A, b = _system(5)
    A[0, 1] += np.float16(1.0)
    with pytest.raises(ValueError, match="A"):
        hessian.cg(A, b)
