"""Estimators over a distributed curvature operator whose arguments differ between ranks (a hunt at 2
and 3 ranks).

Every product of ``distributed(op, comm, weight)`` (and ``from_mlp(..., comm=)``) is a collective,
and nothing compared what the ranks' estimators asked for:

- an argument refused on one rank (``trace(H, num_matvecs=-1)``, ``top_eigenvalues(H, k=0)``, a
  ``cg`` right-hand side of another shape) raised there while the others waited in the first
  product forever (the launch's timeout);
- another count of products on one rank (``spectral_density(num_probes=2)`` beside ``3``) left a
  rank waiting for a product the others never made (a hang);
- another ``seed`` (or ``v0``) on one rank summed the products of other vectors: each rank
  returned another, wrong, trace (1.76 on rank 0 and 0.77 on rank 1 of one operator), no error.

Now each product first agrees (one small allreduce) that every rank makes it, of the same vectors,
and each estimator ends with one more agreement (its result or its error): every rank raises the
same error, and the next estimator runs as usual.

Each test launches this file under ``mpiexec -n N python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure (a passing case takes seconds)
SAME = "(every rank runs the same estimator with the same arguments"


@pytest.mark.spawns
def test_an_estimator_refused_on_one_rank_raises_on_every_rank():
    run_case(__file__, "refused", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_other_seeds_or_counts_of_products_on_one_rank_raise_on_every_rank():
    run_case(__file__, "apart", 3, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_estimators_over_operators_built_from_a_distributed_one_end_in_lockstep():
    """``2 * H``, ``H + H``: their estimators carried no lockstep (only ``H`` had one), so one
    refused on one rank left the others in a product of ``H``."""
    run_case(__file__, "composed", 2, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _operator(comm):
    """The distributed operator of diag(1..8) (each rank's share: weight 1/size of (r+1)-scaled
    rows, normalized), and the matrix it sums to."""
    from optkern.distributed import distributed

    r, size = comm.rank, comm.size
    d = np.arange(1.0, 9.0)
    total = sum(k + 1 for k in range(size))
    return distributed(np.diag(d * (r + 1)), comm, 1.0 / total), np.diag(d)


def _still_in_lockstep(comm, H, A) -> None:
    """After the errors, an estimator run alike gives every rank the single-process numbers."""
    from optkern import hessian

    t = hessian.trace(H, num_matvecs=8, seed=3).estimate
    assert np.isclose(t, hessian.trace(A, num_matvecs=8, seed=3).estimate, rtol=1e-12), t
    top = hessian.top_eigenvalues(H, k=2).eigenvalues
    assert np.allclose(top, [8.0, 7.0], rtol=1e-10), top
    got = comm.allgather_object((t, top.tobytes()))
    assert all(g == got[0] for g in got)


def case_refused(comm) -> None:
    from optkern import hessian

    H, A = _operator(comm)
    bad = comm.rank == 1
    with _raises(ValueError, "num_matvecs: must be >= 1, got -1"):
        hessian.trace(H, num_matvecs=-1 if bad else 10)
    with _raises(ValueError, "k: must be >= 1, got 0"):
        hessian.top_eigenvalues(H, k=0 if bad else 2)
    with _raises(ValueError, "b: expected shape (8,)"):
        hessian.cg(H, np.ones(7 if bad else 8))
    with _raises(TypeError, "num_probes: expected an integer, got list"):  # (a TypeError everywhere)
        hessian.spectral_density(H, num_probes=[1] if bad else 1)
    _still_in_lockstep(comm, H, A)


def case_apart(comm) -> None:
    from optkern import hessian

    H, A = _operator(comm)
    r = comm.rank
    # (the estimators' arguments are compared at their start since hunt 50c: the error names them)
    with _raises(ValueError, "seed: 1 on rank 1, 0 on rank 0 (every rank runs trace()"):
        hessian.trace(H, num_matvecs=6, seed=r)
    with _raises(ValueError, "v0: an array of shape (8,), float64 (hash"):
        hessian.power_iteration(H, v0=np.ones(8) if r < 2 else np.arange(1.0, 9.0))
    with _raises(ValueError, "num_probes: 3 on rank 1, 2 on rank 0"):
        hessian.spectral_density(H, num_probes=2 if r == 0 else 3, steps=4)
    with _raises(ValueError, f"op: a product of 2 vectors on rank 2, of 1 on rank 0 {SAME}"):
        H.matmat(np.ones((8, 2))) if r == 2 else H.matvec(np.ones(8))
    _still_in_lockstep(comm, H, A)
    Hc = copy.deepcopy(H)  # (a copy's products run through the same lockstep as its estimators)
    with _raises(ValueError, "num_probes: 3 on rank 1, 2 on rank 0"):
        hessian.spectral_density(Hc, num_probes=2 if r == 0 else 3, steps=4)
    _still_in_lockstep(comm, Hc, A)


def case_composed(comm) -> None:
    from optkern import hessian

    H, A = _operator(comm)
    bad = comm.rank == 1
    for M, want in ((H.dot(2.0), 2 * A), (H + H, 2 * A), (H @ H, A @ A)):
        with _raises(ValueError, "num_matvecs: must be >= 1, got -1"):
            hessian.trace(M, num_matvecs=-1 if bad else 10)
        with _raises(ValueError, "k: must be >= 1, got 0"):
            hessian.top_eigenvalues(M, k=0 if bad else 2)
        t = hessian.trace(M, num_matvecs=8, seed=3).estimate
        assert np.isclose(t, hessian.trace(want, num_matvecs=8, seed=3).estimate, rtol=1e-12), t
    _still_in_lockstep(comm, H, A)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
