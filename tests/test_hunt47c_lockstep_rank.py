"""``same_on_every_rank`` names the differing rank from the error's ``rank``, not from its text.

It matched "op: rank (\\d+) multiplies other vectors than rank 0" in the message: any rewording of
the lockstep's error left the argument unnamed, and another error that happened to read so (a
rank's own refusal, relayed as its text) was turned into "grad: rank N holds another gradient".
The lockstep now raises ``OtherVectors`` carrying the rank. (The 2-rank run of the real collective:
tests/test_hunt46e_dist_curvature.py.)

And it compares every entry: through a product's header, which hashes about 32 rows, a gradient
that differed between the ranks in a few entries passed, and each rank returned another fraction
(0.03409 and 0.03391), no error, where the docs promise ValueError naming ``grad`` on every rank.
The MPI test launches this file under ``mpiexec -n 2 python -m mpi4py`` with one case."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here
from optkern.distributed.lockstep import OtherVectors, _apart
from optkern.hessian._lockstep import same_on_every_rank


class _Op:
    """An operator whose lockstep's product raises ``error``."""

    def __init__(self, error) -> None:
        error_ = error

        class Lock:
            def product(self, x, whole=False):
                raise error_

        self._lockstep = Lock()
        self.matvec = lambda v: v


def test_the_rank_comes_from_the_error():
    op = _Op(OtherVectors("reworded: vectors differ", 7))
    with pytest.raises(ValueError, match="grad: rank 7 holds another gradient than rank 0") as info:
        same_on_every_rank(op, np.ones(3), "grad", "gradient")
    assert isinstance(info.value.__cause__, OtherVectors)


def test_an_error_that_only_reads_like_it_is_left_as_it_is():
    text = "op: rank 1 multiplies other vectors than rank 0 (on rank 1)"
    op = _Op(ValueError(text))
    with pytest.raises(ValueError) as info:
        same_on_every_rank(op, np.ones(3), "grad", "gradient")
    assert str(info.value) == text


def test_the_lockstep_raises_it_with_the_rank():
    headers = [(1.0, 1.0, 5.0), (1.0, 1.0, 5.0), (1.0, 1.0, 6.0)]
    e = _apart(headers, [None, None, None])
    assert isinstance(e, OtherVectors) and e.rank == 2
    assert "op: rank 2 multiplies other vectors than rank 0" in str(e)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is OtherVectors and back.rank == 2 and str(back) == str(e)
    # another count of vectors is no OtherVectors (it names op: the estimators' k differ)
    e = _apart([(1.0, 1.0, 5.0), (1.0, 2.0, 5.0)], [None, None])
    assert type(e) is ValueError and "a product of 2 vectors on rank 1" in str(e)


@pytest.mark.spawns
def test_a_gradient_differing_in_one_entry_is_refused_on_every_rank():
    pytest.importorskip("mpi4py")
    run_case(__file__, "one_entry", 2, timeout=60)


def case_one_entry(comm) -> None:
    from optkern import hessian
    from optkern.distributed import distributed

    n = 100
    H = distributed(np.diag(np.arange(1.0, n + 1)), comm, 0.5)
    g = np.linspace(1.0, 2.0, n)
    mine = g.copy()
    if comm.rank == 1:
        mine[1] = 1.5  # (row 1: none of the rows a product's header hashes, x[::3])
    with raises(ValueError, "grad: rank 1 holds another gradient than rank 0"):
        hessian.gradient_concentration(H, mine, 2)
    V = np.eye(n)[:, :2].copy()
    W = V.copy()
    if comm.rank == 1:
        W[1, 1] = 1e-3
    with raises(ValueError, "eigenvectors: rank 1 holds another subspace than rank 0"):
        hessian.gradient_concentration(H, g, 2, eigenvectors=W)
    a = hessian.gradient_concentration(H, g, 2, eigenvectors=V)  # (the same on every rank: taken)
    np.testing.assert_allclose(a, np.sum(g[:2] ** 2) / np.sum(g**2), rtol=1e-13)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
