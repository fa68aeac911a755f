"""``same_on_every_rank`` names the differing rank from the error's ``rank``, not from its text.

It matched "op: rank (\\d+) multiplies other vectors than rank 0" in the message: any rewording of
the lockstep's error left the argument unnamed, and another error that happened to read so (a
rank's own refusal, relayed as its text) was turned into "grad: rank N holds another gradient".
The lockstep now raises ``OtherVectors`` carrying the rank. (The 2-rank run of the real collective:
tests/test_hunt46e_dist_curvature.py.)"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from optkern.distributed.lockstep import OtherVectors, _apart
from optkern.hessian._lockstep import same_on_every_rank


class _Op:
    """An operator whose lockstep's product raises ``error``."""

    def __init__(self, error) -> None:
        error_ = error

        class Lock:
            def product(self, x):
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
