"""Hunt 55g: ``ShardedOptimizer.load_state_dict`` of shards whose hyper-parameters differ between the
ranks is refused on every rank, each keeping the state it had, as a shard from another step is.

Each rank loads its own shard, and only the shards' step counts were compared: rank 1's shard with
another ``lr`` (or ``betas``, a hand-edited or mixed checkpoint) loaded on every rank without a
word, and from then on every ``step`` raised "the ranks' hyper-parameters differ, changed after
construction on some ranks only" -- an optimizer that could no longer step, blamed on a change the
user never made. ``DistributedOptimizer`` refused the same load at once. Run on 2 ranks under
``mpiexec``; a hang is a failure (the launch's timeout).
"""

from __future__ import annotations

import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 60  # s: a passing launch takes well under 15 s


@pytest.mark.spawns
def test_shards_with_other_hyper_parameters_are_refused_on_every_rank():
    pytest.importorskip("mpi4py")
    run_case(__file__, "hyper", 2, timeout=CASE_TIMEOUT)


def case_hyper(comm) -> None:
    """lr, then betas, differing in rank 1's shard: ValueError naming the entry and both ranks on
    every rank; each rank's hyper-parameters and state as before; the next step goes on together
    and equals the unsharded optimizer's. Shards alike (a round trip, another lr in every shard)
    still load."""
    import numpy as np

    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    p = [np.linspace(-1, 1, 7, dtype=np.float32), np.ones((2, 3), np.float32)]
    ref = [a.copy() for a in p]
    z = ShardedOptimizer(optim.Adam, p, comm, lr=0.1)
    o = optim.Adam(ref, lr=0.1)
    g = [np.full(7, 0.5, np.float32), np.full((2, 3), -0.25, np.float32)]
    z.step(g)
    o.step(g)
    good = z.state_dict()
    for key, value in (("lr", 0.5), ("betas", (0.5, 0.999))):
        sd = z.state_dict()
        if comm.rank == 1:
            sd["optimizer"]["param_groups"][0][key] = value
        with raises(ValueError, "other hyper-parameters: params[0]: hyper-parameter"):
            z.load_state_dict(sd)
        assert z.param_groups[0]["lr"] == 0.1 and tuple(z.param_groups[0]["betas"]) == (0.9, 0.999)
    z.load_state_dict(good)
    z.step(g)
    o.step(g)
    alike = z.state_dict()  # (another lr in every rank's shard: loaded, and stepped with)
    alike["optimizer"]["param_groups"][0]["lr"] = 0.05
    z.load_state_dict(alike)
    o.param_groups[0]["lr"] = 0.05
    z.step(g)
    o.step(g)
    for a, b in zip(p, ref):
        np.testing.assert_array_equal(a, b)


if __name__ == "__main__":
    import sys

    run_here(globals(), sys.argv[1:])
