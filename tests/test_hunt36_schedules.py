"""Constraints between a schedule's attributes, checked where the schedule is used: ``linear_warmup``'s
warm-up within its schedule's horizon was checked by the constructor only; assigned afterwards,
``Scheduler.step`` wrote a warm-up past the schedule's end into the optimizer unchecked."""

import numpy as np
import pytest

from optkern import optim, schedules


def _opt():
    return optim.SGD([np.zeros(3, np.float32)], lr=0.5)


def test_cyclic_max_lr_assigned_below_base_lr_runs_the_downward_triangle():
    # (refused here once; torch's CyclicLR takes base_lr > max_lr and runs the triangle downward:
    # test_hunt40l_schedules compares it with torch)
    c = schedules.cyclic(0.1, 1.0, step_size_up=4)
    opt = _opt()
    sched = c.attach(opt)
    sched.step()
    c.max_lr = 0.01
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 - 0.09 * 0.5)
    assert c(4) == pytest.approx(0.01)


def test_cyclic_equal_bounds_still_taken():
    c = schedules.cyclic(0.5, 1.0)
    c.base_lr = 1.0
    assert c(7) == 1.0


def test_warmup_longer_than_its_schedule_assigned_later_is_refused_by_name():
    w = schedules.linear_warmup(schedules.cosine(1.0, T_max=10), 5)
    opt = _opt()
    sched = w.attach(opt)
    sched.step()
    lr = opt.param_groups[0]["lr"]
    w.warmup_steps = 50
    with pytest.raises(ValueError, match=r"^warmup_steps: 50 is longer than the schedule's total_steps 10"):
        sched.step()
    assert opt.param_groups[0]["lr"] == lr and sched.last_step == 1
    w.shift = True  # the warm-up then comes before the schedule: any length
    sched.step()


def test_warmup_schedule_shortened_later_is_refused_by_name():
    inner = schedules.cosine(1.0, T_max=10)
    w = schedules.linear_warmup(inner, 5)
    assert w(3) > 0
    inner.total_steps = 4
    with pytest.raises(ValueError, match=r"^warmup_steps: 5 is longer than the schedule's total_steps 4"):
        w(3)
    w.schedule = schedules.cosine(1.0, T_max=20)
    assert w(3) > 0
