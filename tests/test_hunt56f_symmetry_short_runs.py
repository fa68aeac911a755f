"""A grossly asymmetric user operator on a short Krylov run (56th hunt, f).

``CouplingCheck`` raises ValueError naming ``op`` at the second step whose ``q_i^T A q_j`` and
``q_j^T A q_i`` differ by more than a quarter of ``||A||``, and holds its RuntimeWarning back after a
first such step (so that a refused operator raises the error only). A run with a single checked step
-- n = 2 or 3, a block run of two blocks -- ended there with neither: ``[[1, 5], [0, 2]]`` wrapped as a
SciPy ``LinearOperator`` gave the top eigenvalue 3.02 "converged" (its eigenvalues are 1 and 2), no
error, no warning. Now the held-back warning is given when the run ends.

And block Lanczos compared no coupling of a last block narrowed to the directions left (n = 3 in blocks
of 2: no step checked at all, top eigenvalue 1.70 of a triangular matrix with eigenvalues -3.98, -0.61
and -0.11, silently); the narrowed block's rows now keep theirs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse.linalg as sla

from optkern import hessian


def _upper(n: int, seed: int = 0) -> np.ndarray:
    """A triangular (grossly asymmetric) matrix with eigenvalues 1..n on its diagonal."""
    rng = np.random.default_rng(seed)
    return 3.0 * np.triu(rng.standard_normal((n, n)), 1) + np.diag(np.arange(1.0, n + 1.0))


ESTIMATORS = {
    "top_eigenvalues": lambda op: hessian.top_eigenvalues(op, 1),
    "top_eigenvalues SA": lambda op: hessian.top_eigenvalues(op, 1, which="SA"),
    "top_eigenvalues block": lambda op: hessian.top_eigenvalues(op, 1, block_size=2),
    "lanczos": lambda op: hessian.lanczos(op, op.shape[0]),
    "lanczos none": lambda op: hessian.lanczos(op, op.shape[0], reorthogonalize="none"),
    "spectral_density": lambda op: hessian.spectral_density(op, 1, op.shape[0], grid=50),
    "gradient_concentration": lambda op: hessian.gradient_concentration(op, np.ones(op.shape[0]), 1, max_steps=40),
}


def _refused_or_warned(run, op) -> None:
    """ValueError naming op, or a RuntimeWarning naming op and its asymmetry."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            run(op)
        except ValueError as e:
            assert str(e).startswith("op: the operator is not symmetric"), e
            return
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any(m.startswith("op: the operator's products are not symmetric") for m in msgs), msgs


def test_the_three_by_three_in_blocks_of_two_warns():
    A = _upper(3, 0)
    with pytest.warns(RuntimeWarning, match=r"^op: the operator's products are not symmetric"):
        hessian.top_eigenvalues(hessian.from_hvp(lambda v: A @ v, 3), 1, block_size=2)


def test_the_two_by_two_of_the_report_warns():
    op = sla.aslinearoperator(np.array([[1.0, 5.0], [0.0, 2.0]]))
    with pytest.warns(RuntimeWarning, match=r"^op: the operator's products are not symmetric"):
        hessian.top_eigenvalues(op, 1)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("n, seed", [(2, 0), (2, 3), (3, 0), (3, 1), (4, 0), (5, 2), (7, 4)])
def test_short_runs_over_an_asymmetric_hvp_warn_or_raise(name, n, seed):
    A = _upper(n, seed)
    _refused_or_warned(ESTIMATORS[name], hessian.from_hvp(lambda v: A @ v, n))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_symmetric_operators_of_the_same_sizes_stay_quiet(name, n):
    rng = np.random.default_rng(n)
    B = rng.standard_normal((n, n))
    A = B + B.T + np.diag(np.arange(1.0, n + 1.0))
    if name == "gradient_concentration" and n > 1:  # (a gap at the top: the fraction is defined)
        A = A + np.diag(np.r_[np.zeros(n - 1), 50.0])
    if name == "top_eigenvalues block" and n < 2:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ESTIMATORS[name](hessian.from_hvp(lambda v: A @ v, n))


def test_the_refusal_of_a_longer_run_still_comes_without_the_warning():
    """n = 8: the second gross step raises; the warning held back after the first is not given."""
    A = _upper(8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^op: the operator is not symmetric"):
            hessian.top_eigenvalues(hessian.from_hvp(lambda v: A @ v, 8), 1)
