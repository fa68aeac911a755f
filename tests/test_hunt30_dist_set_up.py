"""Set-up arguments that differ between ranks where nothing compared them (a hunt at 2 ranks).

- ``DistributedOptimizer(..., bucket_mb=..., direct_kb=...)`` with other sizes on one rank: the
  sizes cut the gradients into buckets, one collective each, so the ranks' collectives had other
  lengths. The first step aborted the job (MPICH: "Message truncated") or, where the lengths
  happened to fit, wrote the sum of unrelated gradients into every rank's (rank 1 read 9.8e211
  for a mean of 1 and 2). Now the set-up compares the sizes: ValueError on every rank.
- ``hessian.from_mlp(..., comm=comm)`` with an argument refused on one rank only (``kind``,
  ``block``, ``block_size``): that rank raised while the others waited in the rows' exchange
  forever. With valid arguments that differ (``kind="ggn"`` on one rank, ``"hessian"`` on
  another; another ``reduction``) the products summed a Hessian and a Gauss-Newton matrix, or
  the ranks' exchanges paired up wrongly and hung. Now every rank checks its arguments inside
  an exchange and compares the curvature it builds: the same error on every rank. So are the
  parameters (by a digest): at other values on one rank (``broadcast_params`` forgotten) the
  products summed the curvature of two points, silently.

Each test launches this file under ``mpiexec -n 2 python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.spawns
def test_bucket_sizes_that_differ_between_ranks_raise_at_set_up():
    run_case(__file__, "bucket_sizes", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_from_mlp_arguments_refused_or_different_on_one_rank_raise_on_every_rank():
    run_case(__file__, "mlp_arguments", 2, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def case_bucket_sizes(comm) -> None:
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    r = comm.rank
    p = [np.zeros((3, 4)), np.zeros(5)]
    with _raises(ValueError, "bucket_mb: 2.0 on rank 1, 1.0 on rank 0"):
        DistributedOptimizer(optim.SGD(p, lr=0.1), comm, bucket_mb=1 + r)
    with _raises(ValueError, "direct_kb: 256.0 on rank 1, 1e-06 on rank 0"):
        DistributedOptimizer(optim.SGD(p, lr=0.1), comm, direct_kb=1e-6 if r == 0 else 256)
    d = DistributedOptimizer(optim.SGD(p, lr=0.1), comm, bucket_mb=1.0, direct_kb=1e-6)  # alike: steps
    d.step([np.full((3, 4), 1.0 + r), np.full(5, 1.0 + r)])
    assert all(np.array_equal(a, np.full(a.shape, -0.1 * 1.5)) for a in p)


def case_mlp_arguments(comm) -> None:
    from optkern import hessian, nn

    r = comm.rank
    model = nn.MLP([3, 4, 2], activation="tanh")
    params = model.init_params(seed=0)
    x, y = np.random.default_rng(r).standard_normal((5, 3)).astype(np.float32), np.arange(5) % 2
    refused = [
        ({"kind": "hesian"}, ValueError, "kind: expected 'hessian' or 'ggn', got 'hesian'"),
        ({"block": "layer9"}, ValueError, "block: expected 'layer1' ... 'layer2', got 'layer9'"),
        ({"block_size": 0}, ValueError, "block_size: must be >= 1, got 0"),
        ({"batches": [x]}, TypeError, "batches[0]: expected an (x, y) pair"),
    ]
    for bad, exc, text in refused:
        kw = bad if r == 1 else {}
        if "batches" in kw:
            with _raises(exc, text):
                hessian.from_mlp(model, params, comm=comm, **kw)
        else:
            with _raises(exc, text):
                hessian.from_mlp(model, params, x, y, comm=comm, **kw)
    apart = [
        ({"kind": "ggn"}, "mlp-hessian (reduction='mean') on rank 1, mlp-ggn (reduction='mean') on rank 0"),
        ({"reduction": "sum"}, "mlp-hessian (reduction='mean') on rank 1, mlp-hessian (reduction='sum') on rank 0"),
        ({"block": "layer2"}, "mlp-hessian[layer1] (reduction='mean') on rank 1, mlp-hessian[layer2]"),
    ]
    for mine, text in apart:
        kw = mine if r == 0 else {k: ("layer1" if k == "block" else None) for k in mine if k == "block"}
        with _raises(ValueError, "kind, block, reduction: " + text):
            hessian.from_mlp(model, params, x, y, comm=comm, **kw)
    moved = params + (r == 1) * 1e-3  # (rank 1 forgot broadcast_params: the curvature of two points)
    with _raises(ValueError, "params: rank 1 holds other values than rank 0 (the curvature is taken at one point"):
        hessian.from_mlp(model, moved, x, y, comm=comm)
    H = hessian.from_mlp(model, params, x, y, comm=comm, kind="ggn")  # alike: the products agree
    got = comm.allgather_object(H.matvec(np.ones(H.shape[0], np.float32)).tobytes())
    assert got[0] == got[1]


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
