"""Resuming and checkpoints (32nd hunt): a load that ``optkern.load`` rolls back (a later target
refused) must leave every target as it was -- an EarlyStopping's in-memory best checkpoint and a
low-precision optimizer's stochastic-rounding seed were lost there -- and checkpoints holding NaN
or inf are refused by name, before anything is assigned (SWA averages, SWALP's momentum buffers)."""

from __future__ import annotations

import numpy as np
import pytest

import optkern
from optkern import optim
from optkern.regularize import EarlyStopping


def _save_with_a_bad_lbfgs(path, **objects):
    """A checkpoint of ``objects`` and an LBFGS of one param: ``_refused_lbfgs()`` (two params) cannot
    take it, and only its own loader finds out, after the targets before it were restored."""
    optkern.save(path, **objects, lb=optim.LBFGS([np.zeros(3)]))


def _refused_lbfgs():
    return optim.LBFGS([np.zeros(3), np.zeros(2)])


def test_early_stopping_keeps_its_best_checkpoint_when_a_load_is_rolled_back(tmp_path):
    # The stopper loaded the saved state (no checkpoint kept: its in-memory one dropped), a later
    # target was refused, and the roll-back loaded its old state, which says one was kept: restore()
    # then raised "no checkpoint kept yet" and the best state of the run was gone.
    stopper = EarlyStopping(patience=3)
    stopper.step(1.0, state={"w": np.arange(3.0)})
    before = stopper.state_dict()
    _save_with_a_bad_lbfgs(tmp_path / "ck.npz", stopper=EarlyStopping())
    with pytest.raises(ValueError, match=r"\['lb'\]: state_dict\['param_groups'\]\[0\]\['params'\]"):
        optkern.load(tmp_path / "ck.npz", stopper=stopper, lb=_refused_lbfgs())
    assert stopper.state_dict() == before
    np.testing.assert_array_equal(stopper.restore()["w"], np.arange(3.0))
    # loaded for good, a state that kept none still restores none (as the run it came from)
    stopper.load_state_dict(EarlyStopping().state_dict())
    with pytest.raises(RuntimeError, match="no checkpoint kept yet"):
        stopper.restore()
