"""State dicts loaded into a differently configured object (hunt 45d).

* ``ReduceLROnPlateau``: the state of a scheduler over an optimizer with two param groups loaded into
  one over a single group, silently; its ``get_last_lr()`` then gave the other run's two lrs (0.01,
  0.05) for a group whose lr was 0.1. Refused now, naming ``state['_last_lr']``, nothing changed. (A
  state with fewer lrs than groups is torch's own -- groups added after its last step -- and loads.)
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern
from optkern import optim, schedules


def _plateau(groups: int):
    params = [np.ones(3, np.float32) for _ in range(groups)]
    opt = optim.SGD([{"params": [p], "lr": 0.1 * (k + 1)} for k, p in enumerate(params)], lr=0.1)
    return opt, schedules.ReduceLROnPlateau(opt, patience=0)


def test_plateau_state_of_more_groups_is_refused(tmp_path):
    opt2, s2 = _plateau(2)
    s2.step(1.0)
    s2.step(2.0)  # (reduced: its lrs 0.01 and 0.02)
    opt1, s1 = _plateau(1)
    before = s1.state_dict()
    with pytest.raises(ValueError, match=r"^state\['_last_lr'\]: holds 2 lrs, but the optimizer has 1 param group "):
        s1.load_state_dict(s2.state_dict())
    assert s1.state_dict() == before and opt1.param_groups[0]["lr"] == 0.1
    optkern.save(tmp_path / "c.npz", sched=s2)
    with pytest.raises(ValueError, match=r"c\.npz\['sched'\]: state\['_last_lr'\]: holds 2 lrs"):
        optkern.load(tmp_path / "c.npz", sched=s1)
    assert s1.state_dict() == before


def test_plateau_state_of_fewer_lrs_than_groups_still_loads():
    opt, s = _plateau(1)
    s.step(1.0)
    opt.add_param_group({"params": [np.ones(2, np.float32)], "lr": 0.3})
    saved = s.state_dict()  # (torch's: one lr, two groups, until the next step)
    assert len(saved["_last_lr"]) == 1
    opt2, s2 = _plateau(2)
    s2.load_state_dict(saved)
    assert s2.get_last_lr() == saved["_last_lr"]
    s2.step(0.5)
    assert len(s2.get_last_lr()) == 2
