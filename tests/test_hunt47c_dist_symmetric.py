"""``distributed(op, comm)`` checks each rank's operator as the estimators check theirs.

Its result is a curvature operator, symmetric by contract, so the estimators took it as such: a
rank's non-symmetric matrix passed unchecked, and ``top_eigenvalues`` returned 3.02, "converged",
for ``[[1, 5], [0, 2]]`` (eigenvalues 1 and 2), ``cg`` a vector of norm 1e7 for a solution of norm
1.6, where both refuse that matrix itself. Its errors named ``A`` (as_operator's default), an
argument ``distributed`` has not. Now ValueError / TypeError naming ``op``, on every rank.

The MPI test launches this file under ``mpiexec -n 2 python -m mpi4py`` with one case."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure


@pytest.mark.spawns
def test_a_non_symmetric_rank_matrix_is_refused_on_every_rank():
    pytest.importorskip("mpi4py")
    run_case(__file__, "refused", 2, timeout=CASE_TIMEOUT)


def case_refused(comm) -> None:
    from optkern import hessian
    from optkern.distributed import distributed

    r = comm.rank
    S = np.array([[2.0, 1.0], [1.0, 3.0]])
    bad = np.array([[1.0, 5.0], [0.0, 2.0]])
    for mine in (bad, sp.csr_matrix(bad), bad.astype(np.int64)):
        with raises(ValueError, "op: a "):  # (rank 1's own error there, named so on rank 0 too)
            distributed(mine if r == 1 else S, comm)
    with raises(ValueError, "op: expected a square matrix"):
        distributed(np.ones((2, 3)) if r == 0 else S, comm)
    with raises(TypeError, "op: expected a float32 or float64 matrix"):
        distributed(np.ones((2, 2), complex), comm)
    # symmetric ones (an integer one among them) still make the operator of the summed matrices
    D = distributed(S if r == 0 else np.array([[1, 0], [0, 1]]), comm)
    want = np.linalg.eigvalsh(S + np.eye(2))
    got = hessian.top_eigenvalues(D, 2).eigenvalues
    np.testing.assert_allclose(np.sort(got), want, rtol=1e-12)
    x = hessian.cg(D, np.ones(2), rtol=1e-12).x
    np.testing.assert_allclose(x, np.linalg.solve(S + np.eye(2), np.ones(2)), rtol=1e-10)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
