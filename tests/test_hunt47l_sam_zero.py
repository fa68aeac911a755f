"""SAM refuses a ShardedOptimizer (ZeRO-1) as its base.

The ascent step moved the base's ``param_groups`` -- a ShardedOptimizer's are its slices of the flat
buffer --, while the closure read the arrays passed in, which each ZeRO step copies into that
buffer: the gradient "at the ascent point" was taken at ``w`` and every SAM step was the wrapped
optimizer's plain step, silently. ZeRO-1 refuses SAM as its ``optimizer_class`` for the same reason
(its ascent step needs the whole gradient); DistributedOptimizer(SAM(...)) is the data-parallel SAM.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O


def test_sam_refuses_a_sharded_optimizer_base_naming_it():
    from mpi4py import MPI

    from optkern.distributed import Communicator, ShardedOptimizer

    ps = [np.linspace(-1, 1, 7)]
    z = ShardedOptimizer(O.SGD, ps, Communicator(MPI.COMM_SELF), lr=0.1)
    with pytest.raises(TypeError, match=r"^base: a ShardedOptimizer.*DistributedOptimizer"):
        O.SAM(z, rho=0.5)
    assert np.array_equal(ps[0], np.linspace(-1, 1, 7))
    O.SAM(O.SGD(ps, lr=0.1), rho=0.5)  # (an unsharded base: taken)
