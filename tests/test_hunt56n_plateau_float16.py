"""ReduceLROnPlateau refuses a NumPy float16 group lr and a float16 default_min_lr in a loaded
state by name, before anything changes, as its other values (tests/test_hunt56m_schedule_float16_split.py):
torch's reduction, ``max(old_lr * factor, min_lr)``, computes with them in float16."""

import numpy as np
import pytest

from optkern import schedules as S

torch = pytest.importorskip("torch")

F16 = [np.float16(0.25), np.array(0.25, dtype=np.float16)]
WHAT = [r"a numpy\.float16 scalar", r"a 0-d numpy\.float16 array"]


def _opt(lr=0.1, groups=1):
    return torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)]} for _ in range(groups)], lr=lr)


@pytest.mark.parametrize("k", [0, 1])
def test_group_lr_refused_at_construction(k):
    opt = _opt(groups=2)
    opt.param_groups[1]["lr"] = F16[k]
    with pytest.raises(TypeError, match=r"optimizer\.param_groups\[1\]\['lr'\]: " + WHAT[k]):
        S.ReduceLROnPlateau(opt)


@pytest.mark.parametrize("k", [0, 1])
def test_group_lr_refused_at_step_nothing_changed(k):
    opt = _opt(groups=2)
    sched = S.ReduceLROnPlateau(opt, patience=0)
    sched.step(1.0)
    before = (sched.state_dict(), [g["lr"] for g in opt.param_groups])
    opt.param_groups[1]["lr"] = F16[k]
    with pytest.raises(TypeError, match=r"optimizer\.param_groups\[1\]\['lr'\]: " + WHAT[k]):
        sched.step(2.0)  # a bad epoch: would reduce both groups
    assert sched.state_dict() == before[0]
    assert opt.param_groups[0]["lr"] == before[1][0]
    assert opt.param_groups[1]["lr"] is F16[k]


def test_float32_group_lr_still_driven():
    opt = _opt(groups=1)
    opt.param_groups[0]["lr"] = np.float32(0.5)
    sched = S.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    sched.step(1.0)
    sched.step(2.0)
    assert float(opt.param_groups[0]["lr"]) == 0.25


@pytest.mark.parametrize("k", [0, 1])
def test_loaded_default_min_lr_refused_nothing_changed(k):
    sched = S.ReduceLROnPlateau(_opt(), min_lr=0.0)
    before = sched.state_dict()
    state = dict(before, default_min_lr=F16[k], patience=7)
    with pytest.raises(TypeError, match=r"state\['default_min_lr'\]: " + WHAT[k]):
        sched.load_state_dict(state)
    assert sched.state_dict() == before


@pytest.mark.parametrize("k", [0, 1])
def test_assigned_default_min_lr_refused_at_step(k):
    opt = _opt(groups=1)
    sched = S.ReduceLROnPlateau(opt, min_lr=0.0, patience=0)
    opt.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "lr": 0.1})
    sched.default_min_lr = F16[k]  # read for the group added after construction
    with pytest.raises(TypeError, match=r"default_min_lr: " + WHAT[k]):
        sched.step(1.0)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.1]


def test_loaded_default_min_lr_float_taken_as_torch():
    opt = _opt(groups=1)
    sched = S.ReduceLROnPlateau(opt, min_lr=0.0)
    t = torch.optim.lr_scheduler.ReduceLROnPlateau(_opt(groups=1), min_lr=0.0)
    for s in (sched, t):
        s.load_state_dict(dict(s.state_dict(), default_min_lr=np.float32(0.05)))
    assert float(sched.default_min_lr) == float(t.default_min_lr)
