"""An integer matrix is read as float64 once per estimator call: the symmetry check and the operator
took a copy each (``float_matrix`` called twice), two n x n float64 copies where one does."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp

from optkern import hessian


def _astype_calls(A, run) -> int:
    """How many times ``A.astype`` runs (a C method: seen as a profiler's c_call event) during ``run()``."""
    calls = [0]

    def profile(frame, event, arg):
        if event == "c_call" and getattr(arg, "__name__", "") == "astype" and getattr(arg, "__self__", None) is A:
            calls[0] += 1

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return calls[0]


def _int_spd(n: int = 6) -> np.ndarray:
    B = np.arange(n * n, dtype=np.int64).reshape(n, n) % 5
    return B @ B.T + n * np.eye(n, dtype=np.int64)


ESTIMATORS = {
    "cg": lambda A: hessian.cg(A, np.ones(A.shape[0])),
    "cg_M": lambda A: hessian.cg(np.eye(A.shape[0]), np.ones(A.shape[0]), M=A),
    "lanczos": lambda A: hessian.lanczos(A, 3, seed=0),
    "top_eigenvalues": lambda A: hessian.top_eigenvalues(A, 2, seed=0),
    "power_iteration": lambda A: hessian.power_iteration(A, max_iter=5, seed=0),
    "spectral_density": lambda A: hessian.spectral_density(A, num_probes=1, steps=3, seed=0),
    "gradient_concentration": lambda A: hessian.gradient_concentration(A, np.ones(A.shape[0]), 2),
}


@pytest.mark.parametrize("which", sorted(ESTIMATORS))
def test_dense_integer_matrix_is_converted_once(which):
    A = _int_spd()
    assert _astype_calls(A, lambda: ESTIMATORS[which](A)) == 1


def test_sparse_integer_matrix_is_converted_once():
    conversions = []

    class Counted(sp.csr_matrix):
        def astype(self, *args, **kwargs):
            conversions.append(args)
            return super().astype(*args, **kwargs)

    A = Counted(_int_spd())
    hessian.cg(A, np.ones(A.shape[0]))
    assert len(conversions) == 1


def test_one_copy_still_checks_symmetry_and_solves():
    """The copy the check reads is the one solved with: a non-symmetric integer matrix is still refused,
    a symmetric one solved as its float64 twin is."""
    with pytest.raises(ValueError, match="A: a dense matrix that is not symmetric"):
        hessian.cg(np.array([[1, 5], [0, 2]]), np.ones(2))
    A = _int_spd()
    b = np.arange(1.0, A.shape[0] + 1)
    x = hessian.cg(A, b, rtol=1e-12).x
    np.testing.assert_allclose(x, np.linalg.solve(A.astype(np.float64), b), rtol=1e-9)
