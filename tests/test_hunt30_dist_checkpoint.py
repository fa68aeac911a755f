"""``optkern.load`` of a distributed wrapper's checkpoint with a bad file on one rank (a hunt at 2 ranks).

A ZeRO-1 ``ShardedOptimizer`` saves one file per rank (``optkern.save(f"shard-{rank}.npz",
opt=opt, params=params)``) and resumes from them with ``optkern.load(..., opt=opt, params=params)``;
the wrapper's ``load_state_dict`` is a collective. A shard damaged or missing on one rank raised
there, before the load, while the other ranks went on into the wrapper's load and waited in it
forever (the launch's timeout). Now the file's refusal is agreed first: every rank raises (the
refusing rank its own error, the others the same type naming it and the rank; a missing file is a
RuntimeError there), nothing is restored, and the next load of good files works.

A shard (one rank's ``ShardedOptimizer.state_dict()``) loaded into an unsharded optimizer (or a
``DistributedOptimizer``) was refused as "missing 'state'", naming no way out: the message now says
it is a shard and to load ``consolidate_state_dict()``'s dict.

``ShardedOptimizer.load_state_dict`` with a shard on some ranks and a consolidated dict on others
was refused, but each kind of rank judged the others' digests by its own rule: rank 0 said "rank 1
loaded another state", rank 1 "rank 0 at b" (a character of a hash). Now the kinds are compared
first: the same message, naming both, on every rank.

The test launches this file under ``mpiexec -n 2 python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.spawns
def test_a_shard_damaged_or_missing_on_one_rank_raises_on_every_rank(tmp_path):
    run_case(__file__, "bad_shard", 2, str(tmp_path), timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_a_shard_on_some_ranks_and_a_consolidated_dict_on_others_are_named_alike():
    run_case(__file__, "mixed_kinds", 3, timeout=CASE_TIMEOUT)


def test_a_shard_loaded_into_an_unsharded_optimizer_is_named_as_one():
    pytest.importorskip("mpi4py")
    from optkern import optim
    from optkern.distributed import Communicator, ShardedOptimizer

    p = [np.linspace(-1.0, 1.0, 5)]
    z = ShardedOptimizer(optim.Adam, p, Communicator(), lr=0.1)
    z.step([np.ones(5)])
    with pytest.raises(ValueError, match=r"^state_dict: is one rank.s ShardedOptimizer shard .* consolidate_st"):
        optim.Adam([p[0].copy()], lr=0.1).load_state_dict(z.state_dict())
    o = optim.Adam([p[0].copy()], lr=0.1)
    o.load_state_dict(z.consolidate_state_dict())  # the consolidated dict loads
    assert int(o.state_dict()["state"][0]["step"]) == 1


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def case_bad_shard(comm, tmp) -> None:
    import optkern
    from optkern import optim
    from optkern.distributed import DistributedOptimizer, ShardedOptimizer

    r = comm.rank
    p = [np.linspace(-1.0, 1.0, 5), np.linspace(0.5, 2.0, 3)]
    z = ShardedOptimizer(optim.Adam, p, comm, lr=0.1)
    z.step([np.ones(5), np.ones(3)])
    good, bad = os.path.join(tmp, f"shard-{r}.npz"), os.path.join(tmp, f"bad-{r}.npz")
    optkern.save(good, opt=z, params=p)
    blob = bytearray(open(good, "rb").read())
    if r == 1:
        blob[len(blob) // 2] ^= 0xFF
    open(bad, "wb").write(bytes(blob))
    saved = [a.copy() for a in p]
    z.step([np.ones(5), np.ones(3)])  # (moved on: a load puts the saved state back)
    moved = [a.copy() for a in p]
    with _raises(ValueError, "bad-1.npz: damaged checkpoint"):
        optkern.load(bad, opt=z, params=p)
    with _raises(RuntimeError if r == 0 else FileNotFoundError, "No such file or directory"):
        optkern.load(good if r == 0 else good + ".gone", opt=z, params=p)
    assert all(np.array_equal(a, b) for a, b in zip(p, moved)), "a refused load restored the params"
    d = DistributedOptimizer(optim.SGD([np.zeros(2)], lr=0.1), comm)
    optkern.save(os.path.join(tmp, f"dp-{r}.npz"), opt=d)
    with _raises(RuntimeError if r == 0 else FileNotFoundError, "No such file or directory"):
        optkern.load(os.path.join(tmp, f"dp-{r}.npz" if r == 0 else "gone.npz"), opt=d)
    optkern.load(good, opt=z, params=p)  # the good shards: restored on every rank
    assert all(np.array_equal(a, b) for a, b in zip(p, saved))
    z.step([np.ones(5), np.ones(3)])
    assert all(np.array_equal(a, b) for a, b in zip(p, moved)), "the resumed step differs"


def case_mixed_kinds(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    r = comm.rank
    p = [np.linspace(-1.0, 1.0, 6)]
    z = ShardedOptimizer(optim.Adam, p, comm, lr=0.1)
    z.step([np.ones(6)])
    shard, full = z.state_dict(), z.consolidate_state_dict(to=None)
    z.step([np.ones(6)])
    text = "state_dict: rank 1 loaded a shard state dict, rank 0 a consolidated one (load the same kind"
    with _raises(ValueError, text):
        z.load_state_dict(full if r != 1 else shard)
    with _raises(ValueError, "state_dict: rank 1 loaded a consolidated state dict, rank 0 a shard one"):
        z.load_state_dict(shard if r == 0 else full)
    assert int(z.optimizer.state_dict()["state"][0]["step"]) == 2  # (every rank's state as it was)
    z.load_state_dict(full)  # alike: loads
    assert int(z.optimizer.state_dict()["state"][0]["step"]) == 1


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
