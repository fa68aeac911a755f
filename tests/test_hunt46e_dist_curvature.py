"""Distributed curvature on 2 ranks against one process.

- ``gradient_concentration``'s ``grad`` (and given ``eigenvectors``) enter no product, so nothing
  compared them across the ranks: each rank's own rows' gradient gave each rank another fraction
  (0.25 on rank 0, 0.55 on rank 1 of one operator), no error, where the README promises the
  single-process numbers on every rank and other products' vectors (``seed``, ``v0``) raise. Now
  ValueError naming ``grad`` / ``eigenvectors`` on every rank, and the next estimator runs as usual.
- ``from_mlp(..., comm=)`` with batch norm: each rank normalizes its own rows, so the operator is the
  single-process one over ``batches=[each rank's rows]`` (bit for bit), not over the concatenated
  batch, as the docstring and README said of every model (the products differed by 6.0 in 10).

Each test launches this file under ``mpiexec -n 2 python -m mpi4py`` (OMP_NUM_THREADS=1, the
launcher's environment) with one case; a hang is a failure (the launch's timeout)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.spawns
def test_gradient_concentration_refuses_another_gradient_on_one_rank():
    run_case(__file__, "gradient", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_batch_norm_ranks_normalize_their_own_rows():
    run_case(__file__, "batch_norm", 2, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def case_gradient(comm) -> None:
    from optkern import hessian
    from optkern.distributed import distributed

    r = comm.rank
    A = np.diag(np.arange(1.0, 9.0))
    H = distributed(A * (r + 1), comm, 1.0 / 3.0)  # (sums to A)
    g = np.linspace(1.0, 2.0, 8)
    mine = g if r == 0 else g[::-1].copy()
    with _raises(ValueError, "grad: rank 1 holds another gradient than rank 0"):
        hessian.gradient_concentration(H, mine, 2)
    V = hessian.top_eigenvalues(H, 3, return_eigenvectors=True).eigenvectors
    W = V if r == 0 else V[:, ::-1].copy()
    with _raises(ValueError, "eigenvectors: rank 1 holds another subspace than rank 0"):
        hessian.gradient_concentration(H, g, 2, eigenvectors=W)
    with _raises(ValueError, "k: must be >= 1, got 0"):  # (a rank refusing first: its error everywhere)
        hessian.gradient_concentration(H, mine, 0 if r == 1 else 2)
    # alike on every rank: the single-process fraction, the same bits everywhere
    want = hessian.gradient_concentration(A, g, 2)
    for got in (hessian.gradient_concentration(H, g, 2), hessian.gradient_concentration(H, g, 2, eigenvectors=V)):
        assert np.isclose(got, want, rtol=1e-12), (got, want)
        assert np.isclose(got, (g[-1] ** 2 + g[-2] ** 2) / (g @ g), rtol=1e-12)
        assert len(set(comm.allgather_object(got))) == 1


def case_batch_norm(comm) -> None:
    from optkern import hessian, nn

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 3)), rng.integers(0, 2, 7)
    parts = [(x[:4], y[:4]), (x[4:], y[4:])]
    xl, yl = parts[comm.rank]
    model = nn.MLP([3, 4, 2], activation="tanh", norm="batch", dtype=np.float64)
    p = model.init_params(seed=0)
    w = np.linspace(-1.0, 1.0, model.num_params)
    for red in ("mean", "sum"):
        got = hessian.from_mlp(model, p, xl, yl, comm=comm, reduction=red) @ w
        want = hessian.from_mlp(model, p, batches=parts, reduction=red) @ w
        assert np.array_equal(got, want), (red, got - want)
        whole = hessian.from_mlp(model, p, x, y, reduction=red) @ w  # (one batch's statistics: another operator)
        assert not np.allclose(got, whole, rtol=1e-3), red


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
