"""amp.GradScaler around a distributed optimizer: the inf/NaN flag agreed by every rank.

``DistributedOptimizer`` / ``ShardedOptimizer`` average the grads inside their step, so an inf in
one rank's local grads reaches every rank's average: every rank must skip. The scaler checked each
rank's local grads alone; the rank holding the inf skipped while the others waited forever in the
step's gradient allreduce (a hang), and the ranks' scales split. The flag is now max-reduced over
the wrapper's communicator before the step is decided (in ``unscale_`` too, whose return value
the user reads).

Each test launches this file under ``mpiexec -n 2 python -m mpi4py`` with one case, which prints
``rank R: CASE ok`` on every rank; a hang is a failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 120  # s: a passing case takes seconds


def _run(case: str) -> None:
    run_case(__file__, case, 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_an_inf_on_one_rank_skips_the_step_on_every_rank():
    _run("step")


@pytest.mark.spawns
def test_unscale_then_step_reports_the_agreed_flag():
    _run("unscale")


@pytest.mark.spawns
def test_grads_refused_on_one_rank_raise_on_every_rank():
    """A gradient of another shape on one rank: that rank's error there, a ValueError saying so
    on the other (which waited alone in the flag's allreduce before), nothing written."""
    _run("refused")


# ---- cases (run under mpiexec)


def _wrapped(comm, kind):
    from optkern import optim
    from optkern.distributed import DistributedOptimizer, ShardedOptimizer

    p = np.linspace(-1, 1, 37).astype(np.float32)
    if kind == "dp":
        return p, DistributedOptimizer(optim.AdamW([p], lr=0.1), comm)
    return p, ShardedOptimizer(optim.AdamW, [p], comm, lr=0.1)


def case_step(comm):
    from optkern import amp

    for kind in ("dp", "zero"):
        p, opt = _wrapped(comm, kind)
        p0 = p.copy()
        scaler = amp.GradScaler(init_scale=8.0, growth_interval=1)
        g = np.full(37, 8.0, np.float32)
        if comm.rank == 1:
            g[30] = np.inf  # (one rank only: its average is inf on every rank)
        assert scaler.step(opt, [g]) is None
        scaler.update()
        np.testing.assert_array_equal(p, p0)
        assert scaler.get_scale() == 4.0
        g = np.full(37, 8.0, np.float32)  # a clean step after it: every rank steps, scales agree
        scaler.step(opt, [g])
        scaler.update()
        assert not np.array_equal(p, p0)
        assert scaler.get_scale() == 8.0


def case_unscale(comm):
    from optkern import amp

    p, opt = _wrapped(comm, "dp")
    p0 = p.copy()
    scaler = amp.GradScaler(init_scale=2.0)
    g = np.ones(37, np.float32)
    if comm.rank == 0:
        g[0] = np.nan
    assert scaler.unscale_(opt, [g]) is True  # (on rank 1 too, whose own grads are finite)
    assert scaler.step(opt, [g]) is None
    scaler.update()
    np.testing.assert_array_equal(p, p0)


def case_refused(comm):
    from mpi_cases import raises
    from optkern import amp

    for kind in ("dp", "zero"):
        for first in ("unscale_", "step"):
            p, opt = _wrapped(comm, kind)
            p0 = p.copy()
            scaler = amp.GradScaler(init_scale=2.0)
            g = np.ones(36 if comm.rank == 0 else 37, np.float32)
            g0 = g.copy()
            text = "grads[0]: expected shape" if comm.rank == 0 else "refused on another rank"
            with raises(ValueError, text):
                getattr(scaler, first)(opt, [g])
            np.testing.assert_array_equal(g, g0)  # (not unscaled on either rank)
            np.testing.assert_array_equal(p, p0)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
