"""ZeRO-1 / data-parallel wrappers and torch tensors:

- ``ShardedOptimizer(cls, t, comm)`` with one torch tensor ``t`` as the params (an optkern.optim
  optimizer takes one array, NumPy or torch, as one param) iterated the tensor: its rows became
  the params, so ``step(grad_like_t)`` was refused ("expected 3 arrays") and a 0-d tensor was
  "not a list of arrays". Now any array (torch, DLPack) is one param, as a NumPy array is.
- ``DistributedOptimizer(opt)`` / ``ShardedOptimizer(cls)`` with an ``optkern.torch`` or
  ``torch.optim`` optimizer (a ``torch.optim.Optimizer``, which they cannot drive) raised
  "Cannot interpret 'torch.float32' as a data type" / torch's "optimizer can only optimize
  Tensors", naming no argument; now a TypeError naming ``optimizer`` / ``optimizer_class`` and
  what to pass, on every rank.

Each MPI test launches this file under ``mpiexec -n N python -m mpi4py`` with one case."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure


@pytest.mark.spawns
@pytest.mark.parametrize("n", [2, 3])
def test_one_torch_tensor_is_one_sharded_param(n):
    pytest.importorskip("mpi4py")
    pytest.importorskip("torch")
    run_case(__file__, "one_tensor", n, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_torch_optimizers_are_refused_by_name_on_every_rank():
    pytest.importorskip("mpi4py")
    pytest.importorskip("torch")
    run_case(__file__, "torch_optimizers", 2, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def case_one_tensor(comm) -> None:
    import torch

    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    for shape in ((3, 4), (5,), ()):
        t = torch.zeros(shape, dtype=torch.float64)
        ref = np.zeros(shape)
        z = ShardedOptimizer(optim.Adam, t, comm, lr=0.1)
        o = optim.Adam(ref, lr=0.1)
        for k in range(3):
            g = [np.full(shape, float(r + k + 1)) for r in range(comm.size)]
            z.step(torch.from_numpy(g[comm.rank].copy()))
            o.step(np.asarray(np.mean(g, axis=0)))
        np.testing.assert_array_equal(t.numpy(), ref)


def case_torch_optimizers(comm) -> None:
    import torch

    import optkern.torch as ot
    from optkern import optim
    from optkern.distributed import DistributedOptimizer, ShardedOptimizer

    t = torch.zeros(3)
    for opt in (ot.SGD([t], lr=0.1), torch.optim.SGD([t], lr=0.1)):
        with raises(TypeError, "optimizer: expected an optkern.optim optimizer"):
            DistributedOptimizer(opt, comm)
    for cls in (ot.Adam, torch.optim.Adam):
        with raises(TypeError, "optimizer_class: expected an optkern.optim optimizer class"):
            ShardedOptimizer(cls, [t], comm, lr=0.1)
    # (the wrappers still work on the same tensors through optkern.optim)
    DistributedOptimizer(optim.SGD([t], lr=0.1), comm).step([torch.ones(3)])
    np.testing.assert_allclose(t.numpy(), -0.1)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
